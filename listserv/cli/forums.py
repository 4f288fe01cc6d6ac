"""`listserv forum ...`: create, list, show and edit forums.

Thin commands over site/forums.py (and moderation/rules.py for a forum's
hold rules). A forum's members have their own commands in members.py.
Writes through those modules only.
"""

from __future__ import annotations

import click

from listserv.cli.common import (
    json_option,
    pass_site,
    print_fields,
    print_json,
    print_table,
    say,
    utcnow,
)
from listserv.cli.mta import refresh_maps
from listserv.site import forums, members
from listserv.site.folder import Site

FORUM_COLUMNS = [("slug", "forum"), ("path", "path"), ("language", "lang"),
                 ("policy", "policy"), ("members", "members"), ("held", "held"),
                 ("title", "title")]


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
