"""The operator's commands: `backup`, `purge`, `queue retry`, `held retry`.

Thin, like every command: parse, call one core function (backup.py,
retention.py, setaside.py), print. They work whether `serve` runs or not;
writes go through the site's store like any other command's, and a running
server picks up retried rows by their status.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from listserv.cli.common import (
    at_option,
    json_option,
    moment,
    pass_site,
    print_json,
    say,
    server_pid,
)
from listserv.site.folder import Site


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@json_option
@pass_site
def backup(site: Site, file: Path, force: bool, as_json: bool) -> None:
    """Copy the live database to FILE, consistent, while serve keeps running.

    The copy is checked before it takes FILE's name, and is readable by you
    only. Restore it with serve stopped (see the README)."""
    from listserv.site.backup import backup_database

    site.require()
    site.db  # migrate first: a copy of an old schema is restored as one
    done = backup_database(site, file, overwrite=force)
    if as_json:
        print_json(done)
        return
    click.echo(f"{done['file']}: {done['bytes']} bytes, schema {done['schema']}, "
               f"{done['forums']} forums, {done['members']} members, "
               f"{done['messages']} messages")


@click.command()
@json_option
@at_option
@pass_site
def purge(site: Site, as_json: bool, at: str | None) -> None:
    """Drop, now, what [site] keep_sent and keep_raw no longer keep.

    Sent delivery rows older than keep_sent, and the raw text of distributed
    posts older than keep_raw that no digest still needs. serve does the
    same every hour."""
    from listserv.site.retention import purge_old

    now, total = moment(at), Counter()
    settings = site.settings
    while True:
        done = site.write_now(purge_old, settings, now)
        total.update(done)
        if max(done.values()) < 2000:
            break
    report = {key: total.get(key, 0) for key in ("deliveries", "raw", "bodies", "tokens")}
    if as_json:
        print_json(report)
        return
    click.echo(f"Purged {report['deliveries']} sent delivery rows, the text of "
               f"{report['raw']} distributed messages, {report['bodies']} bodies and "
               f"{report['tokens']} expired tokens")


@click.command("retry")
@click.argument("ids", nargs=-1, type=int, metavar="[ID]...")
@click.option("--all", "everything", is_flag=True, help="Every failed delivery.")
@json_option
@at_option
@pass_site
def queue_retry(site: Site, ids: tuple[int, ...], everything: bool, as_json: bool,
                at: str | None) -> None:
    """Queue failed deliveries again: the ids 'listserv queue' shows, or --all.

    A bounced delivery is retried only when named by its id."""
    from listserv.intake.setaside import retry_deliveries

    if bool(ids) == everything:
        raise click.UsageError("give the ids of failed deliveries, or --all")
    rows = site.write_now(retry_deliveries, None if everything else list(ids), moment(at))
    if as_json:
        print_json(rows)
        return
    recipients = sum(row["size"] or 1 for row in rows)
    click.echo(f"Queued again: {len(rows)} deliveries ({recipients} recipients)")
    _served(site, rows)


@click.command("retry")
@click.argument("ids", nargs=-1, type=int, metavar="[MESSAGE_ID]...")
@click.option("--post", "post_ids", multiple=True, type=int, metavar="POST_ID",
              help="A post that could not be distributed (as 'listserv status' lists).")
@click.option("--all", "everything", is_flag=True,
              help="Every message and post set aside.")
@json_option
@pass_site
def held_retry(site: Site, ids: tuple[int, ...], post_ids: tuple[int, ...], everything: bool,
               as_json: bool) -> None:
    """Try again messages and posts set aside after failing ('listserv status'
    lists them): message ids, --post ids, or --all."""
    from listserv.intake.setaside import retry_held

    if not (ids or post_ids) and not everything or (ids or post_ids) and everything:
        raise click.UsageError("give message ids (or --post ids) set aside, or --all")
    done = site.write_now(retry_held, list(ids), list(post_ids), everything)
    if as_json:
        print_json(done)
        return
    click.echo(f"Tried again: {len(done['messages'])} messages, {len(done['posts'])} posts")
    _served(site, done["messages"] or done["posts"])


def _served(site: Site, something) -> None:
    if something and server_pid(site) is None:
        say("They go out when 'listserv serve' runs.")


COMMANDS = (backup, purge)
