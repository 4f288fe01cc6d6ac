"""`listserv forum ...` and `listserv member ...`: forums and their members.

Thin commands over forums.py, members.py and subscriptions.py: create, show
and edit forums (their hold rules through moderation/rules.py); add,
remove, list and import members. `member add` without
--preconfirmed, and `member import --invite`, queue a confirmation request
instead of adding (the running server delivers it). Imports go through the
file in chunks of IMPORT_CHUNK rows, one transaction each, so a file of any
size is read in bounded memory. Writes through those modules only.
"""

from __future__ import annotations

import csv
import itertools
import sys
from pathlib import Path

import click

from listserv.cli.common import (
    json_option,
    pass_site,
    print_fields,
    print_json,
    print_table,
    say,
    server_pid,
    stream_json_list,
    utcnow,
)
from listserv.cli.mta import refresh_maps
from listserv.errors import AlreadyExists, ListservError
from listserv.site import forums, members
from listserv.site.folder import Site
from listserv.site.member_files import read_member_file

IMPORT_CHUNK = 1000
MAX_PROBLEMS_SHOWN = 1000
FORUM_COLUMNS = [("slug", "forum"), ("path", "path"), ("language", "lang"),
                 ("policy", "policy"), ("members", "members"), ("held", "held"),
                 ("title", "title")]
MEMBER_COLUMNS = ("address", "mode", "profile", "language", "region", "delivery", "bounces",
                  "name")


def _forum_json(forum: dict) -> dict:
    forum = dict(forum)
    forum["charter"] = bool(forum["charter"])
    return forum


@click.group()
def forum() -> None:
    """Create, list, show and edit forums."""


@forum.command("create")
@click.argument("slug")
@click.option("--title", required=True, help="The forum's title, one line.")
@click.option("--path", "forum_path", required=True, type=click.Choice(forums.PATHS),
              help="The alliance path the forum follows.")
@click.option("--language", help="The primary language (default: [site] default_language).")
@click.option("--policy", type=click.Choice(forums.POLICIES), default="members",
              show_default=True, help="Who may post without being held.")
@click.option("--facilitator", "facilitators", multiple=True, metavar="ADDR",
              help="A facilitator's address; repeat for several.")
@click.option("--no-charter", is_flag=True,
              help="Do not require acceptance of the charter to subscribe.")
@click.option("--digest", type=click.Choice(forums.DIGESTS), default="weekly",
              show_default=True, help="How often digest members get a digest.")
@click.option("--description", default="", help="A few words on what the forum is for.")
@click.option("--dmarc", type=click.Choice(forums.DMARC), default="auto", show_default=True,
              help="DMARC mitigation: auto (only for posters whose domain asks receivers "
                   "to quarantine or reject), munge (From becomes the forum's), wrap (the "
                   "post goes as an attachment), none.")
@click.option("--archive", type=click.Choice(forums.ARCHIVES),
              help="public: on the web and by email to anyone; members: by email to members "
                   "only; none: not kept (default: public when subscription is open).")
@pass_site
def forum_create(site: Site, slug: str, title: str, forum_path: str, language: str | None,
                 policy: str, facilitators: tuple[str, ...], no_charter: bool, digest: str,
                 description: str, dmarc: str, archive: str | None) -> None:
    """Create the forum SLUG (its address is SLUG@domain)."""
    settings = site.settings
    created = forums.create(site.db, slug, title=title, path=forum_path, now=utcnow(),
                            languages=settings.site.languages,
                            language=language or settings.site.default_language,
                            policy=policy, facilitators=facilitators, charter=not no_charter,
                            digest=digest, description=description, archive=archive,
                            dmarc=dmarc)
    say(f"Created forum '{slug}': post to {slug}@{settings.domain}, "
        f"subscribe at {slug}-join@{settings.domain}")
    refresh_maps(site)
    if not created["facilitators"]:
        say(f"No facilitator yet: add one with "
            f"'listserv forum edit {slug} --add-facilitator ADDR'")


@forum.command("list")
@json_option
@pass_site
def forum_list(site: Site, as_json: bool) -> None:
    """List the forums with their member and held-post counts."""
    rows = forums.list_forums(site.db)
    if as_json:
        print_json([_forum_json(row) for row in rows])
    else:
        print_table(rows, FORUM_COLUMNS, empty="No forums yet: create one with "
                                              "'listserv forum create'.")


@forum.command("show")
@click.argument("slug")
@json_option
@pass_site
def forum_show(site: Site, slug: str, as_json: bool) -> None:
    """Show one forum's settings, facilitators and counts."""
    from moderation.rules import describe_rules

    found = forums.get(site.db, slug)
    found["members"] = members.count(site.db, found["id"])
    found["held"] = site.db.execute("SELECT count(*) FROM holds WHERE forum_id = ? AND "
                                    "status = 'held'", [found["id"]]).fetchone()[0]
    if as_json:
        print_json(_forum_json(found))
        return
    domain = site.settings.domain
    print_fields([("Forum", found["slug"]), ("Title", found["title"]),
                  ("Address", f"{found['slug']}@{domain}"), ("Path", found["path"]),
                  ("Language", found["language"]), ("Policy", found["policy"]),
                  ("Charter", "required" if found["charter"] else "not required"),
                  ("Subscription", found["subscription"]), ("Content", found["content"]),
                  ("Digest", found["digest"]), ("DMARC", found["dmarc"]),
                  ("Description", found["description"]),
                  ("Archive", found["archive"] + (f" ({found['archive_url']})"
                                                  if found["archive_url"] else "")),
                  ("Facilitators", found["facilitators"] or "none"),
                  ("Hold rules", describe_rules(found)),
                  ("Members", found["members"]), ("Held posts", found["held"]),
                  ("Created", found["created_at"][:19])])


@forum.command("edit")
@click.argument("slug")
@click.option("--title", help="A new title.")
@click.option("--path", "forum_path", type=click.Choice(forums.PATHS), help="A new path.")
@click.option("--language", help="A new primary language.")
@click.option("--policy", type=click.Choice(forums.POLICIES), help="A new posting policy.")
@click.option("--digest", type=click.Choice(forums.DIGESTS), help="A new digest schedule.")
@click.option("--charter/--no-charter", default=None,
              help="Require (or not) acceptance of the charter to subscribe.")
@click.option("--subscription", type=click.Choice(forums.SUBSCRIPTIONS),
              help="open: confirming is enough; approve: a facilitator approves too.")
@click.option("--content", type=click.Choice(forums.CONTENT),
              help="html: keep sanitised HTML; text: send plain text only.")
@click.option("--description", help="A new description.")
@click.option("--archive-url", help="Where the forum's archive can be read, when it is "
              "not this site's own web archive.")
@click.option("--archive", type=click.Choice(forums.ARCHIVES),
              help="public: on the web and by email to anyone; members: by email to members "
                   "only; none: not kept.")
@click.option("--dmarc", type=click.Choice(forums.DMARC), default=None,
              help="DMARC mitigation: auto (only for posters whose domain asks receivers "
                   "to quarantine or reject), munge (From becomes the forum's), wrap (the "
                   "post goes as an attachment), none.")
@click.option("--add-facilitator", "added", multiple=True, metavar="ADDR",
              help="Add a facilitator; repeat for several.")
@click.option("--remove-facilitator", "removed", multiple=True, metavar="ADDR",
              help="Remove a facilitator; repeat for several.")
@click.option("--non-member", type=click.Choice(("hold", "reject", "discard")),
              help="Hold rule: what happens to a non-member's post.")
@click.option("--probation", type=click.IntRange(0), metavar="N",
              help="Hold rule: hold each new member's first N posts (0: none).")
@click.option("--max-size", type=click.IntRange(0), metavar="BYTES",
              help="Hold rule: hold posts bigger than this (0: no limit).")
@click.option("--hold-types", metavar="LIST",
              help="Hold rule: hold attachments of these types or names, e.g. "
                   "'application/x-msdownload, *.exe' ('' for none).")
@click.option("--hold-words", metavar="LIST",
              help="Hold rule: hold posts containing these phrases, comma-separated.")
@click.option("--hold-loops/--no-hold-loops", default=None,
              help="Hold rule: hold suspected mail loops (the default) or let them pass.")
@click.option("--daily-limit", type=click.IntRange(0), metavar="N",
              help="Hold rule: hold a member's posts beyond N a day (0: no limit).")
@click.option("--emergency/--no-emergency", default=None,
              help="Hold every post to the forum until switched off again.")
@pass_site
def forum_edit(site: Site, slug: str, title, forum_path, language, policy, digest, charter,
               subscription, content, description, archive_url, archive, dmarc, added, removed,
               **hold_rules) -> None:
    """Change a forum's settings, facilitators or hold rules; only the options given change."""
    from moderation.rules import edit_rules

    changes = {key: value for key, value in (
        ("title", title), ("path", forum_path), ("language", language), ("policy", policy),
        ("digest", digest), ("charter", charter), ("subscription", subscription),
        ("content", content), ("description", description), ("archive_url", archive_url),
        ("archive", archive),
        ("dmarc", dmarc),
    ) if value is not None}
    rules = {key: value for key, value in hold_rules.items() if value is not None}
    if not changes and not added and not removed and not rules:
        raise click.UsageError("nothing to change: give at least one option "
                               "(see 'listserv forum edit --help')")
    with site.db.atomic():
        edited = forums.edit(site.db, slug, changes, languages=site.settings.site.languages,
                             add_facilitators=added, remove_facilitators=removed)
        edit_rules(site.db, slug, rules)
        if changes:  # its archive pages and the directory show what changed
            from listserv.archive.keep import mark
            mark(site.db, edited["id"], "forum")
            mark(site.db, 0, "directory")
    what = list(changes) + (["facilitators"] if added or removed else []) + list(rules)
    say(f"Changed forum '{slug}': {', '.join(what)}")


@click.group()
def member() -> None:
    """Add, remove, list and import the members of a forum."""


def _member_options(name, language, mode, profile, region) -> dict:
    return {"name": name or "", "language": language, "mode": mode or "each",
            "profile": profile or "email", "region": region or ""}


@member.command("add")
@click.argument("slug")
@click.argument("address")
@click.option("--name", help="The member's name.")
@click.option("--language", help="The member's language (default: the forum's).")
@click.option("--mode", type=click.Choice(members.MODES), default="each", show_default=True,
              help="each post, a digest, or no mail.")
@click.option("--profile", type=click.Choice(members.PROFILES), default="email",
              show_default=True, help="email (full MIME) or lowband (plain text, small).")
@click.option("--region", help="Where the member is.")
@click.option("--preconfirmed", is_flag=True,
              help="Add at once, without a confirmation round trip (an administrative act).")
@pass_site
def member_add(site: Site, slug: str, address: str, name, language, mode, profile, region,
               preconfirmed: bool) -> None:
    """Add ADDRESS to a forum, or send it a confirmation request.

    Without --preconfirmed the address gets a confirmation request (with the
    charter where the forum requires it) and becomes a member when it replies."""
    languages = site.settings.site.languages
    options = _member_options(name, language, mode, profile, region)
    if preconfirmed:
        added = members.add(site.db, slug, address, now=utcnow(), languages=languages,
                            **options)
        say(f"Added {added['address']} to '{slug}' ({added['mode']}, {added['profile']}, "
            f"{added['language']})")
        return
    forum_row = forums.get(site.db, slug)
    outcome = _request(site, forum_row, address, options)
    if outcome == "member":
        raise AlreadyExists(f"{address} is already a member of '{slug}'")
    if outcome == "throttled":
        raise ListservError(f"{address} has several unanswered confirmation requests for "
                            f"'{slug}'; none sent (use --preconfirmed to add it at once)")
    if outcome == "pending":
        say(f"{address} has confirmed already and waits for a facilitator's approval")
        return
    say(f"Sent a confirmation request to {address}; it joins '{slug}' when it replies")
    _warn_if_not_served(site)


def _request(site: Site, forum_row: dict, address: str, options: dict) -> str:
    """Queue a confirmation request; returns request_subscription's outcome."""
    from listserv.intake.subscriptions import request_subscription

    with site.db.atomic():
        return request_subscription(site.db, site, forum_row, address, options, utcnow(),
                                    how="admin")


def _warn_if_not_served(site: Site) -> None:
    if server_pid(site) is None:
        say("No server is running: the mail waits in the outbound queue until "
            "'listserv serve' starts")


@member.command("remove")
@click.argument("slug")
@click.argument("address")
@pass_site
def member_remove(site: Site, slug: str, address: str) -> None:
    """Remove ADDRESS from a forum at once (no goodbye message)."""
    members.remove(site.db, slug, address, now=utcnow())
    say(f"Removed {address} from '{slug}'")


@member.command("list")
@click.argument("slug")
@json_option
@pass_site
def member_list(site: Site, slug: str, as_json: bool) -> None:
    """List a forum's members in address order (read in batches, any size)."""
    forums.get(site.db, slug)  # a clear error before any output
    rows = members.iter_members(site.db, slug)
    if as_json:
        stream_json_list(rows)
        return
    first = next(rows, None)
    if first is None:
        say(f"'{slug}' has no members yet")
        return
    widths = (40, 7, 8, 8, 16, 8, 7, 0)
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(MEMBER_COLUMNS, widths)).rstrip())
    for row in itertools.chain([first], rows):
        row["bounces"] = row["bounce_score"]
        cells = [" ".join(str(row[key] if row[key] is not None else "").split())
                 for key in MEMBER_COLUMNS]
        click.echo("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())


@member.command("show")
@click.argument("slug")
@click.argument("address")
@json_option
@pass_site
def member_show(site: Site, slug: str, address: str, as_json: bool) -> None:
    """Show one member: settings, bounce score and delivery state."""
    forum_row = forums.get(site.db, slug)
    found = members.find(site.db, forum_row["id"], address)
    if found is None:
        raise ListservError(f"{address} is not a member of '{slug}' "
                            f"(see 'listserv member list {slug}')")
    if as_json:
        print_json(found)
        return
    state = found["delivery"]
    if state == "disabled":
        state += (f" by bounces since {found['disabled_at'][:16]}, "
                  f"{found['warnings']} notice(s) sent")
    print_fields([("Address", found["address"]), ("Forum", slug), ("Name", found["name"]),
                  ("Language", found["language"]), ("Mode", found["mode"]),
                  ("Profile", found["profile"]), ("Region", found["region"]),
                  ("Joined", found["joined_at"][:16]), ("Posts", found["posts"]),
                  ("Delivery", state), ("Bounce score", found["bounce_score"]),
                  ("Last bounce", (found["last_bounce_at"] or "-")[:16])])


@member.command("enable")
@click.argument("slug")
@click.argument("address")
@pass_site
def member_enable(site: Site, slug: str, address: str) -> None:
    """Turn delivery back on for a member that bounces disabled, and clear the score."""
    from listserv.delivery.bounce_actions import enable

    forum_row = forums.get(site.db, slug)
    with site.db.atomic():
        enable(site.db, forum_row, address, utcnow())
    say(f"Delivery to {address} on '{slug}' is on again")


@member.command("import")
@click.argument("slug")
@click.argument("csv_file", metavar="FILE.csv",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--invite", is_flag=True,
              help="Send each address a confirmation request instead of adding it.")
@json_option
@pass_site
def member_import(site: Site, slug: str, csv_file: Path, invite: bool, as_json: bool) -> None:
    """Add the addresses in a file to a forum, at once.

    The file is CSV with a header row ('address', then any of name, language,
    mode, profile, region), or one address a line as mail programs and GNU
    Mailman write them ('Ana Souza <ana@example.org>'). Existing members are
    left as they are; each bad line is reported with its number and the rest
    are imported. Exits with status 1 when any line could not be imported."""
    languages = site.settings.site.languages
    forum_row = forums.get(site.db, slug)
    totals = {"added": 0, "invited": 0, "existing": 0, "problems": 0}
    problems: list[str] = []
    lines = _count_rows(csv_file)
    try:
        with csv_file.open(encoding="utf-8-sig", newline="") as handle:
            rows = read_member_file(handle)
            first = next(rows, None)  # the header is checked before anything is imported
            rows = itertools.chain([first] if first else [], rows)
            with click.progressbar(length=lines, label=f"Importing into {slug}",
                                   file=sys.stderr, hidden=not sys.stderr.isatty(),
                                   show_pos=True) as bar:
                while chunk := list(itertools.islice(rows, IMPORT_CHUNK)):
                    if invite:
                        result = _invite_rows(site, forum_row, chunk)
                    else:
                        result = members.import_rows(site.db, slug, chunk, now=utcnow(),
                                                     languages=languages)
                    for key in ("added", "invited", "existing"):
                        totals[key] += result.get(key, 0)
                    totals["problems"] += len(result["problems"])
                    room = MAX_PROBLEMS_SHOWN - len(problems)
                    problems.extend(result["problems"][:max(room, 0)])
                    bar.update(len(chunk))
    except UnicodeDecodeError:
        raise ListservError(f"{csv_file} is not UTF-8 text; save it as 'CSV UTF-8' and import "
                            f"again ({_so_far(totals)}; they are skipped next time)") from None
    except csv.Error as error:
        raise ListservError(f"{csv_file}: not a readable CSV file: {error} "
                            f"({_so_far(totals)}; they are skipped next time)") from None
    if as_json:
        print_json(dict(totals, forum=slug, problem_lines=problems))
    else:
        for problem in problems:
            say(problem)
        if totals["problems"] > len(problems):
            say(f"... and {totals['problems'] - len(problems)} more problems")
        done = (f"invited {totals['invited']}" if invite else f"added {totals['added']}")
        click.echo(f"{slug}: {done}, already members {totals['existing']}, "
                   f"problems {totals['problems']}")
    if invite and totals["invited"]:
        _warn_if_not_served(site)
    if totals["problems"]:
        raise ListservError(f"{totals['problems']} line(s) of {csv_file} could not be "
                            f"imported; the others were")


def _so_far(totals: dict) -> str:
    done = totals["added"] + totals["invited"]
    return f"{done} addresses before the problem were taken" if done else "nothing was taken"


def _count_rows(path: Path) -> int:
    """Lines after the header, counted in binary blocks (for the progress bar)."""
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(lines - (last == b"\n"), 0)


def _invite_rows(site: Site, forum_row: dict, chunk: list[tuple[int, dict]]) -> dict:
    """Queue a confirmation request for each row, in one transaction."""
    from listserv.intake.subscriptions import request_subscription

    result = {"invited": 0, "existing": 0, "problems": []}
    now = utcnow()
    with site.db.atomic():
        for line, row in chunk:
            options = _member_options(row.get("name"), row.get("language") or None,
                                      row.get("mode"), row.get("profile"), row.get("region"))
            try:
                with site.db.atomic():  # a savepoint: one bad row undoes only itself
                    outcome = request_subscription(site.db, site, forum_row,
                                                   row.get("address", ""), options, now,
                                                   how="admin")
            except ListservError as error:
                result["problems"].append(f"line {line}: {error}")
                continue
            if outcome == "sent":
                result["invited"] += 1
            elif outcome == "throttled":
                result["problems"].append(f"line {line}: {row.get('address')} has several "
                                          f"unanswered requests already; none sent")
            else:  # "member", or "pending" a facilitator's approval
                result["existing"] += 1
    return result
