"""`listserv forum import-mailman`: a GNU Mailman 3 list becomes a forum.

Reads the files Mailman exports (see mailman_import.py for which and what
each becomes), then, in one transaction: creates the forum (or updates the
one of that name with the list's settings), adds the members with their
delivery modes, makes the moderators and owners facilitators, and records
each member's moderation as their standing. Members already on the forum
are left as they are, so running it again adds only the new ones. Every
line that could not be read is named; the exit status is 1 when there was
one. Wires listserv core with moderation/ (hold rules and standings).
"""

from __future__ import annotations

from pathlib import Path

import click

from listserv.cli.common import json_option, local_user, pass_site, print_json, say, utcnow
from listserv.cli.mta import refresh_maps
from listserv.errors import ListservError
from listserv.site import forums, members
from listserv.site.folder import Site
from listserv.site.mailman_import import apply_flags, read_addresses, read_config, read_roster

EXPORT = click.Path(exists=True, dir_okay=False, path_type=Path)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ListservError(f"{path} is not UTF-8 text (Mailman writes UTF-8; was the file "
                            f"converted?)") from None


@click.command("import-mailman")
@click.argument("slug")
@click.argument("members_file", metavar="MEMBERS", type=EXPORT)
@click.option("--digest", "digest_file", type=EXPORT,
              help="Digest members: the output of 'mailman members --digest any LIST'.")
@click.option("--nomail", "nomail_file", type=EXPORT,
              help="Members who get no mail: 'mailman members --nomail any LIST'.")
@click.option("--moderators", "moderator_files", type=EXPORT, multiple=True,
              help="'mailman members --role moderator LIST' (or --role owner): they become "
                   "the forum's facilitators. May be given twice.")
@click.option("--config", "config_file", type=EXPORT,
              help="The list's settings as JSON (REST: GET /3.1/lists/LIST/config).")
@click.option("--title", help="The forum's title (default: the list's display name).")
@click.option("--path", "forum_path", type=click.Choice(forums.PATHS),
              help="The forum's path; needed when the forum does not exist yet.")
@json_option
@pass_site
def import_mailman(site: Site, slug: str, members_file: Path, digest_file: Path | None,
                   nomail_file: Path | None, moderator_files: tuple[Path, ...],
                   config_file: Path | None, title: str | None, forum_path: str | None,
                   as_json: bool) -> None:
    """Make a forum of a GNU Mailman 3 list: its members, their flags, its settings.

    MEMBERS is the output of 'mailman members LIST' (one 'Name <addr>' a line)
    or the REST roster as JSON (GET /3.1/lists/LIST/roster/member), which also
    gives each member's delivery mode and moderation. Members already on the
    forum are left as they are."""
    from moderation import rules

    languages = site.settings.site.languages
    roster = read_roster(_text(members_file), members_file.name)
    problems = list(roster.problems)
    listed = {}
    for key, path in (("digest", digest_file), ("nomail", nomail_file)):
        listed[key] = []
        if path is not None:
            listed[key], found = read_addresses(_text(path), path.name)
            problems += found
    extra = apply_flags(roster, listed["digest"], listed["nomail"])
    moderators: list[str] = []
    for path in moderator_files:
        rows, found = read_addresses(_text(path), path.name)
        problems += found
        moderators += [row["address"] for _, row in rows if row["address"] not in moderators]
    settings = read_config(_text(config_file), config_file.name, languages) \
        if config_file else {}
    non_member = settings.pop("non_member", None)
    if title:
        settings["title"] = title
    now = utcnow()
    db = site.db
    with db.atomic():
        created = forums.find(db, slug) is None
        if created:
            if forum_path is None:
                raise ListservError(f"forum '{slug}' does not exist yet; give --path "
                                    f"({'|'.join(forums.PATHS)}) to create it")
            fields = dict(settings)
            forums.create(db, slug, title=fields.pop("title", slug), path=forum_path, now=now,
                          languages=languages,
                          language=fields.pop("language", site.settings.site.default_language),
                          facilitators=tuple(moderators), **fields)
        else:
            if forum_path:
                settings["path"] = forum_path
            forums.edit(db, slug, settings, languages=languages,
                        add_facilitators=tuple(moderators))
        forum = forums.get(db, slug)
        if non_member:
            rules.edit_rules(db, slug, {"non_member": non_member})
        numbered = sorted(((roster.lines[a], row) for a, row in roster.rows.items()),
                          key=lambda pair: pair[0])
        result = members.import_rows(db, slug, numbered, now=now, languages=languages)
        problems += [f"{members_file.name} {line}" for line in result["problems"]]
        for address, standing in roster.standings.items():
            if members.find(db, forum["id"], address) is not None:
                rules.set_standing(db, forum["id"], address, standing, by=local_user(),
                                   via="mailman import", now=now)
    if created:
        refresh_maps(site)
    modes = {mode: sum(1 for row in roster.rows.values() if row.get("mode") == mode)
             for mode in ("digest", "nomail")}
    report = {"forum": slug, "created": created, "added": result["added"],
              "existing": result["existing"], "digest": modes["digest"],
              "nomail": modes["nomail"], "not_in_members_file": extra,
              "facilitators": moderators, "standings": dict(sorted(roster.standings.items())),
              "settings": dict(settings, **({"non_member": non_member} if non_member else {})),
              "problems": problems}
    if as_json:
        print_json(report)
    else:
        for problem in problems:
            say(problem)
        click.echo(f"{slug}: {'created' if created else 'updated'}, added {result['added']}, "
                   f"already members {result['existing']}, digest {modes['digest']}, "
                   f"nomail {modes['nomail']}, facilitators {len(moderators)}, "
                   f"standings {len(roster.standings)}, problems {len(problems)}")
    if problems:
        raise ListservError(f"{len(problems)} line(s) could not be imported; the others were")
