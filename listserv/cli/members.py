"""`listserv member ...`: add, remove, list, show and import a forum's members.

Thin commands over members.py and subscriptions.py. `member add` without
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
    say,
    server_pid,
    stream_json_list,
    utcnow,
)
from listserv.errors import AlreadyExists, ListservError
from listserv.site import forums, members
from listserv.site.folder import Site
from listserv.site.member_files import read_member_file

IMPORT_CHUNK = 1000
MAX_PROBLEMS_SHOWN = 1000
MEMBER_COLUMNS = ("address", "mode", "profile", "language", "region", "delivery", "bounces",
                  "name")


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
