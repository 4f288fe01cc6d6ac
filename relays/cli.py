"""The command line of relays/: `relay` (on the hub), and on a relay node
`recipient`, `translation` and `postal`.

Commands are thin: parse, call one function of the package, print (data on
stdout, `--json` for JSON; messages on stderr). Writes go through
`site.write_now`, so they are one transaction each, also while `listserv
serve` runs. Registered on the root group by listserv/cli/main.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from listserv.cli.common import (
    at_option,
    json_option,
    local_user,
    moment,
    pass_site,
    print_fields,
    print_json,
    print_table,
    say,
    utcnow,
)
from listserv.errors import ListservError, NotFound
from listserv.mail.templates import render_mail
from listserv.site.folder import Site
from relays import hub, postal, recipients, sheets
from relays.translation import sheet_context


def _role(site: Site, role: str, what: str) -> None:
    if site.settings.site.role != role:
        other = "the hub" if role == "hub" else "a relay node"
        raise ListservError(f"'{what}' runs on {other}; this site is a "
                            f"{site.settings.site.role} ([site] role in listserv.toml)")


# -- relay (hub) ---------------------------------------------------------------------
@click.group()
def relay() -> None:
    """On the hub: the relay nodes that carry its publications."""


@relay.command("add")
@click.argument("relay_id", metavar="ID")
@click.option("--address", required=True, help="The relay's federation address, relay@DOMAIN.")
@click.option("--secret-file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The file with the secret shared with the relay (written if missing).")
@click.option("--language", "languages", multiple=True, metavar="xx",
              help="A language the relay serves (repeat for several).")
@click.option("--region", "regions", multiple=True, help="A region the relay covers.")
@click.option("--digest", "digests", multiple=True, metavar="SLUG",
              help="A forum whose digests the relay carries (What's New it always carries).")
@pass_site
def relay_add(site: Site, relay_id: str, address: str, secret_file: Path, languages,
              regions, digests) -> None:
    """Add a relay node: ID is its node id ([site] node_id there, else its domain)."""
    _role(site, "hub", "relay add")
    created = site.write_now(lambda db: hub.add_relay(
        db, relay_id, address=address, secret_file=secret_file, now=utcnow(),
        languages=languages, regions=regions, digests=digests))
    say(f"Added the relay {relay_id} at {address}.")
    if created:
        say(f"Wrote a new shared secret to {secret_file}: copy it to the relay's site folder "
            f"(its [relay] secret_file) by a safe way, and keep it private.")
    say("It gets the latest What's New at once, then each new publication it carries.")


@relay.command("edit")
@click.argument("relay_id", metavar="ID")
@click.option("--address", help="A new federation address.")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Another secret file (to rotate, rather add a second line to the file).")
@click.option("--add-digest", multiple=True, metavar="SLUG", help="Carry this forum's digests.")
@click.option("--remove-digest", multiple=True, metavar="SLUG", help="Stop carrying them.")
@click.option("--pause", "status", flag_value="paused", help="Send nothing for now.")
@click.option("--resume", "status", flag_value="active", help="Send again.")
@pass_site
def relay_edit(site: Site, relay_id: str, address, secret_file, add_digest, remove_digest,
               status) -> None:
    """Change a relay: its address, secret file, digests carried, paused or not."""
    _role(site, "hub", "relay edit")
    row = site.write_now(lambda db: hub.edit_relay(
        db, relay_id, address=address, secret_file=secret_file, add_digests=add_digest,
        remove_digests=remove_digest, status=status))
    say(f"Relay {relay_id}: {row['status']}, {row['address']}, digests "
        f"{', '.join(json.loads(row['digests'])) or 'none'}.")


@relay.command("list")
@json_option
@pass_site
def relay_list(site: Site, as_json: bool) -> None:
    """List the relays with what they were sent and what they acknowledged."""
    rows = [{k: v for k, v in r.items() if k != "publications"}
            for r in hub.relay_report(site.db)]
    if as_json:
        print_json(rows)
        return
    print_table(rows, [("id", "relay"), ("status", "status"), ("address", "address"),
                       ("languages", "languages"), ("sent", "sent"), ("received", "received"),
                       ("dispatched", "dispatched"), ("regions", "regions")],
                empty="No relays yet (add one with 'listserv relay add').")


@relay.command("status")
@click.argument("relay_id", metavar="ID", required=False)
@json_option
@pass_site
def relay_status(site: Site, relay_id: str | None, as_json: bool) -> None:
    """Per relay: each publication sent, delivered, received, translated, dispatched."""
    report = hub.relay_report(site.db, relay_id)
    if as_json:
        print_json(report)
        return
    if not report:
        say("No relays yet (add one with 'listserv relay add').")
    for number, row in enumerate(report):
        if number:
            click.echo()
        counts = row["latest_counts"]
        print_fields([
            ("Relay", f"{row['id']} ({row['status']}) at {row['address']}"),
            ("Publications", f"{row['sent']} sent, {row['waiting']} waiting, "
                             f"{row['failed']} failed"),
            ("Acknowledged", f"received {row['received']}, translated {row['translated']}, "
                             f"dispatched {row['dispatched']}"),
            ("Last dispatch", _profiles(counts) if counts else "-")])
        rows = [dict(p, queued=p["queued_at"][:16], translation=_languages(p["translated"]),
                     profiles=_profiles(p["dispatched"].get("profiles", {})))
                for p in row["publications"][:20]]
        print_table(rows, [("key", "publication"), ("queued", "queued"),
                           ("delivery", "delivery"), ("received_at", "received"),
                           ("translation", "translated"), ("profiles", "dispatched")])
        for refusal in row["refused"]:
            click.echo(f"  refused {refusal['at'][:19]} from {refusal['mail_from'] or '?'}: "
                       f"{refusal['reason']}")
    others = hub.other_refusals(site.db) if not relay_id else []
    if others:
        click.echo()
        say("Federation mail refused from no known relay:")
        for refusal in others:
            click.echo(f"  {refusal['at'][:19]} from {refusal['mail_from'] or '?'} (node "
                       f"{refusal['node'] or '?'}): {refusal['reason']}")


def _profiles(counts: dict) -> str:
    low, post = counts.get("lowband", {}), counts.get("postal", {})
    return (f"lowband {low.get('recipients', 0)} recipients ({low.get('messages', 0)} "
            f"messages), postal {post.get('recipients', 0)} in {post.get('batches', 0)} "
            f"batches, {post.get('posted', 0)} posted") if counts else ""


def _languages(translated: dict) -> str:
    languages = translated.get("languages", {})
    return ", ".join(f"{lang} {c.get('translated', 0)}/{c.get('segments', 0)}"
                     for lang, c in sorted(languages.items()))


# -- recipient (relay) ------------------------------------------------------------------
@click.group()
def recipient() -> None:
    """On a relay: its own lowband email and postal recipients."""


@recipient.command("add")
@click.argument("who", metavar="ADDR_OR_NAME")
@click.option("--profile", required=True, type=click.Choice(recipients.PROFILES),
              help="lowband (email under a byte budget) or postal (printed and posted).")
@click.option("--language", default="", metavar="xx", help="The recipient's language.")
@click.option("--name", default="", help="The recipient's name.")
@click.option("--postal-address", default="", metavar="TEXT",
              help="Postal: the address, lines separated by ';'.")
@click.option("--country", default="", metavar="CC", help="Postal: the two-letter country code.")
@click.option("--budget", type=int, metavar="BYTES",
              help="Lowband: the largest message in bytes (default [delivery] lowband_budget).")
@pass_site
def recipient_add(site: Site, who: str, profile: str, language: str, name: str,
                  postal_address: str, country: str, budget: int | None) -> None:
    """Add a lowband recipient (an email address) or a postal one (a name)."""
    row = site.write_now(lambda db: recipients.add_recipient(
        db, site, who, profile=profile, now=utcnow(), language=language, name=name,
        postal_address=postal_address, country=country, budget=budget))
    say(f"Added {profile} recipient {row['id']}: {row.get('address') or row['name']} "
        f"({row['language']}).")


@recipient.command("list")
@click.option("--profile", type=click.Choice(recipients.PROFILES), help="Only this profile.")
@json_option
@pass_site
def recipient_list(site: Site, profile: str | None, as_json: bool) -> None:
    """List the relay's recipients."""
    rows = list(recipients.list_recipients(site.db, profile))
    if as_json:
        print_json(rows)
        return
    print_table([dict(r, who=r["address"] or r["name"],
                      where=r["country"] or f"{r['budget']} bytes") for r in rows],
                [("id", "id"), ("profile", "profile"), ("language", "language"),
                 ("where", "country/budget"), ("who", "recipient")],
                empty="No recipients yet (add one with 'listserv recipient add').")


@recipient.command("remove")
@click.argument("recipient_id", metavar="ID", type=int)
@pass_site
def recipient_remove(site: Site, recipient_id: int) -> None:
    """Remove a recipient (batches already made keep their labels)."""
    row = site.write_now(lambda db: recipients.remove_recipient(db, recipient_id))
    say(f"Removed {row['profile']} recipient {recipient_id} ({row['address'] or row['name']}).")


# -- translation (relay) ------------------------------------------------------------------
@click.group()
def translation() -> None:
    """On a relay: translation sheets of the publications received."""


def _sheets(db) -> list[dict]:
    return list(db.query(
        "SELECT s.id, p.key AS publication, s.language, s.status, p.deadline_at AS deadline, "
        "(SELECT count(*) FROM translation_segments g WHERE g.publication_id = s.publication_id "
        "AND g.language = s.language) AS segments, "
        "(SELECT count(*) FROM translation_segments g WHERE g.publication_id = s.publication_id "
        "AND g.language = s.language AND g.status IN ('open', 'original')) AS missing "
        "FROM translation_sheets s JOIN relay_publications p ON p.id = s.publication_id "
        "ORDER BY s.id DESC"))


@translation.command("list")
@json_option
@pass_site
def translation_list(site: Site, as_json: bool) -> None:
    """List translation sheets: publication, language, segments missing, deadline."""
    rows = _sheets(site.db)
    if as_json:
        print_json(rows)
        return
    print_table([dict(r, deadline=r["deadline"][:16].replace("T", " ")) for r in rows],
                [("id", "sheet"), ("publication", "publication"), ("language", "language"),
                 ("status", "status"), ("missing", "missing"), ("segments", "segments"),
                 ("deadline", "deadline")], empty="No translation sheets yet.")


def _sheet(db, sheet_id: int) -> tuple[dict, dict]:
    rows = list(db.query("SELECT * FROM translation_sheets WHERE id = ?", [sheet_id]))
    if not rows:
        raise NotFound(f"translation sheet {sheet_id} does not exist "
                       f"(see 'listserv translation list')")
    return rows[0], db["relay_publications"].get(rows[0]["publication_id"])


@translation.command("show")
@click.argument("sheet_id", metavar="ID", type=int)
@json_option
@pass_site
def translation_show(site: Site, sheet_id: int, as_json: bool) -> None:
    """Print a sheet's open segments as sent to translators (fill it for 'submit')."""
    sheet, publication = _sheet(site.db, sheet_id)
    if as_json:
        print_json({**sheet, "publication": publication["key"], "segments": list(
            site.db.query("SELECT number, sheet_number, path, source_language, source, "
                          "text, status, filled_by FROM translation_segments WHERE "
                          "publication_id = ? AND language = ? ORDER BY number",
                          [sheet["publication_id"], sheet["language"]]))})
        return
    context = sheet_context(site.db, sheet, publication)
    subject, body = render_mail(site.active_templates, "translation-sheet.txt",
                                sheet["language"], site={"name": site.settings.site.name,
                                                         "domain": site.settings.domain},
                                **context)
    say(f"{subject} ({sheet['status']})")
    click.echo(body.rstrip())


@translation.command("submit")
@click.argument("sheet_id", metavar="ID", type=int)
@click.argument("file", type=click.File("r", encoding="utf-8"))
@pass_site
def translation_submit(site: Site, sheet_id: int, file) -> None:
    """Fill a sheet from FILE: '[N] translation' for each segment (as a reply would)."""
    text = file.read()
    outcome = site.write_now(lambda db: sheets.submit_file(
        db, site, sheet_id, text, f"cli:{local_user()}", utcnow()))
    result = outcome.as_dict()
    say(f"Sheet {sheet_id}: accepted {len(result['accepted'])}"
        + (f"; still missing {', '.join(map(str, result['missing']))}" if result["missing"]
           else "; complete")
        + (f"; unchanged {', '.join(map(str, result['unchanged']))}" if result["unchanged"]
           else "")
        + (f"; not on the sheet {', '.join(map(str, result['unknown']))}" if result["unknown"]
           else ""))


# -- postal (relay) ------------------------------------------------------------------------
@click.group("postal")
def postal_group() -> None:
    """On a relay: print-ready postal batches (master PDF, labels, manifest)."""


@postal_group.command("list")
@json_option
@pass_site
def postal_list(site: Site, as_json: bool) -> None:
    """List postal batches, newest first."""
    rows = postal.list_batches(site.db)
    if as_json:
        print_json(rows)
        return
    print_table([dict(r, created=r["created_at"][:16], countries=", ".join(
        f"{c} {n}" for c, n in r["countries"].items()), problems=len(r["problems"]) or "")
        for r in rows],
        [("id", "batch"), ("status", "status"), ("recipients", "recipients"),
         ("created", "created"), ("countries", "countries"), ("problems", "labels not fitting")],
        empty="No postal batches yet.")


@postal_group.command("show")
@click.argument("batch", metavar="BATCH")
@json_option
@pass_site
def postal_show(site: Site, batch: str, as_json: bool) -> None:
    """Show a batch: its files, and its recipients by country."""
    row = postal.show_batch(site.db, site, batch)
    if as_json:
        print_json(row)
        return
    print_fields([("Batch", row["id"]), ("Publication", row["publication"]),
                  ("Language", row["language"]), ("Status", row["status"]),
                  ("Recipients", row["recipients"]), ("Folder", row["folder"])]
                 + ([("Problem", row["error"])] if row["error"] else []))
    for name in row["files"]:
        click.echo(f"  {name}")
    for country, number in row["countries"].items():
        click.echo(f"  {country}: {number}")
    if row["problems"]:
        say(f"{len(row['problems'])} label(s) do not fit; correct the address with "
            f"'listserv recipient' and write these by hand:")
        for problem in row["problems"]:
            click.echo(f"  {problem['name']}: {problem['problem']}")


@postal_group.command("mark-sent")
@click.argument("batch", metavar="BATCH")
@at_option
@pass_site
def postal_mark_sent(site: Site, batch: str, at: str | None) -> None:
    """Record that a batch was printed and posted (the hub is told)."""
    site.write_now(lambda db: postal.mark_sent(db, batch, moment(at), site))
    say(f"Postal batch {batch} marked sent; the hub is told it was posted.")


COMMANDS = (relay, recipient, translation, postal_group)
