"""`listserv queue` and `listserv status`: what the site is doing, read-only.

`status` gathers one screen from the store: the site and whether a server
holds it, forums with member and held counts, messages received and set
aside (status 'failed', with the reason), posts, holds, the outbound queue
and recent bounces. `queue` shows the outbound queue in detail. Both read
the database and the serve lock; they write nothing and change no state.
"""

from __future__ import annotations

from datetime import datetime, timezone

import click

from listserv.cli.common import (
    age,
    at_option,
    json_option,
    moment,
    pass_site,
    print_fields,
    print_json,
    print_table,
    say,
    server_pid,
)
from listserv.site.folder import Site

RECENT = 10
# Sections other packages add to the screen (wired in main.py): (key, collect, describe)
# with collect(site, now) -> data (shown as report[key] by --json) and
# describe(data) -> lines of text.
SECTIONS: list[tuple] = []


def queue_report(db, now: datetime) -> dict:
    """The delivery module's report when it has one, else the queue summary."""
    try:
        from listserv.delivery.engine import queue_report as report
    except ImportError:
        from listserv.delivery.queue import summary
        return summary(db, now.timestamp())
    return report(db, now)


def site_status(site: Site, now: datetime, pid: str | None) -> dict:
    """Everything `listserv status` shows, as plain data."""
    settings, db = site.settings, site.db
    smarthost = settings.delivery.smarthost
    report = {
        "site": {"folder": str(site.folder), "domain": settings.domain,
                 "name": settings.site.name, "role": settings.site.role,
                 "node": settings.node_id,
                 "delivery": f"smarthost {smarthost}" if smarthost
                 else f"outbox Maildir {site.outbox}"},
        "server": {"running": pid is not None, "pid": pid},
        "forums": [{key: row[key] for key in ("slug", "title", "path", "language", "policy",
                                              "members", "held")}
                   for row in db.query(
                       "SELECT f.slug, f.title, f.path, f.language, f.policy, "
                       "(SELECT count(*) FROM members m WHERE m.forum_id = f.id) AS members, "
                       "(SELECT count(*) FROM holds h WHERE h.forum_id = f.id "
                       "AND h.status = 'held') AS held FROM forums f ORDER BY f.slug")],
    }
    report["messages"] = {
        "counts": _counts(db, "messages"),
        "failed": list(db.query(
            "SELECT id, received_at, mail_from, subject, attempts, error FROM messages "
            "WHERE status = 'failed' ORDER BY id DESC LIMIT ?", [RECENT])),
        # Failed at least once and waiting for their next try (set aside after MAX_ATTEMPTS).
        "retrying": [dict(row, next_try=_stamp(row.pop("retry_at"))) for row in db.query(
            "SELECT id, received_at, mail_from, subject, attempts, error, retry_at "
            "FROM messages WHERE status = 'received' AND attempts > 0 "
            "ORDER BY retry_at LIMIT ?", [RECENT])],
    }
    report["posts"] = {
        "counts": _counts(db, "posts"),
        "failed": list(db.query(
            "SELECT p.id, f.slug, p.status, p.subject, p.reason FROM posts p "
            "JOIN forums f ON f.id = p.forum_id WHERE p.status = 'failed' "
            "ORDER BY p.id DESC LIMIT ?", [RECENT])),
    }
    held, oldest = db.execute("SELECT count(*), min(created_at) FROM holds "
                              "WHERE status = 'held'").fetchone()
    report["holds"] = {"held": held, "oldest_seconds": _seconds_since(oldest, now)}
    summary = queue_report(db, now)
    report["queue"] = {"counts": summary.get("counts", {}),
                       "oldest_waiting_seconds": summary.get("oldest_waiting_seconds"),
                       # SPEC 8: recipients a crash may send a copy twice, at most
                       "crash_window": settings.delivery.crash_window}
    report["bounces"] = list(db.query(
        "SELECT at, recipient, code, detail FROM bounces ORDER BY id DESC LIMIT ?", [RECENT]))
    for key, collect, _describe in SECTIONS:
        report[key] = collect(site, now)
    return report


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _counts(db, table: str) -> dict[str, int]:
    return {status: number for status, number in db.execute(
        f"SELECT status, count(*) FROM {table} GROUP BY status ORDER BY status")}


def _seconds_since(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        return (now - datetime.fromisoformat(stamp)).total_seconds()
    except (ValueError, TypeError):  # a naive or odd stamp: show none rather than fail
        return None


@click.group("queue", invoke_without_command=True)
@json_option
@at_option
@pass_site
@click.pass_context
def queue_command(ctx: click.Context, site: Site, as_json: bool, at: str | None) -> None:
    """Show the outbound queue: counts per status, deferred and failed deliveries.

    'listserv queue retry ID|--all' queues failed deliveries again."""
    if ctx.invoked_subcommand is not None:
        return
    now = moment(at)
    report = queue_report(site.db, now)
    if as_json:
        print_json(report)
        return
    counts = report.get("counts", {})
    click.echo("Outbound queue: " + ", ".join(f"{status} {number}"
                                              for status, number in counts.items()))
    click.echo(f"Oldest waiting: {age(report.get('oldest_waiting_seconds'))}")
    deferred = [dict(row, next=_until(row.get("next_at"), now), recipient=_who(row))
                for row in report.get("deferred", [])]
    if deferred:
        click.echo("\nDeferred (will be tried again):")
        print_table(deferred, [("id", "id"), ("recipient", "recipient"), ("attempts", "tries"),
                               ("next", "next try"), ("last_error", "last error")])
    failed = [dict(row, recipient=recipient) for row in report.get("failed", [])
              for recipient in row.get("recipients") or [_who(row)]]  # each one named
    if failed:
        click.echo("\nFailed and bounced:")
        print_table(failed, [("id", "id"), ("recipient", "recipient"), ("status", "status"),
                             ("attempts", "tries"), ("last_error", "last error")])


def _who(row: dict) -> str:
    """A row's recipient, and how many more when the row is a batch."""
    more = (row.get("size") or 1) - 1
    return f"{row['recipient']} +{more} more" if more > 0 else row["recipient"]


def _until(next_at, now: datetime) -> str:
    if next_at is None:
        return "-"
    if isinstance(next_at, str):
        return next_at[:19]
    return "in " + age(float(next_at) - now.timestamp())


NOT_RUNNING = 3  # as `systemctl status` and LSB init scripts say "not running"


@click.command()
@json_option
@at_option
@pass_site
@click.pass_context
def status(ctx: click.Context, site: Site, as_json: bool, at: str | None) -> None:
    """Show the site on one screen: forums, messages, holds, queue, bounces, server.

    Exits with status 3 when no 'listserv serve' is running for the site (after
    showing the rest), so a script or a monitor can tell; 1 on an error."""
    report = site_status(site, moment(at), server_pid(site))
    if as_json:
        print_json(report)
    else:
        _print_status(report)
    if not report["server"]["running"]:
        say(f"listserv serve is not running for {site.folder}")
        ctx.exit(NOT_RUNNING)


def _print_status(report: dict) -> None:
    info, server = report["site"], report["server"]
    print_fields([("Site", f"{info['domain']} ({info['name']})"),
                  ("Role", f"{info['role']}, node {info['node']}"),
                  ("Delivery", info["delivery"]),
                  ("Server", f"running (process {server['pid']})" if server["running"]
                   else "not running (start it with 'listserv serve')")])
    click.echo("\nForums:")
    if report["forums"]:
        print_table(report["forums"], [("slug", "forum"), ("path", "path"),
                                       ("policy", "policy"), ("members", "members"),
                                       ("held", "held"), ("title", "title")])
    else:
        click.echo("  none yet (create one with 'listserv forum create')")
    _print_counts("\nMessages", report["messages"]["counts"])
    if report["messages"]["retrying"]:
        click.echo("Failed, to be tried again:")
        print_table(report["messages"]["retrying"], [
            ("id", "message"), ("mail_from", "from"), ("subject", "subject"),
            ("attempts", "tries"), ("next_try", "next try"), ("error", "reason")])
    if report["messages"]["failed"]:
        click.echo("Set aside after failing (latest first):")
        print_table(report["messages"]["failed"], [("id", "message"), ("received_at", "received"),
                                                   ("mail_from", "from"), ("subject", "subject"),
                                                   ("attempts", "tries"), ("error", "reason")])
    _print_counts("Posts", report["posts"]["counts"])
    if report["posts"]["failed"]:
        click.echo("Posts that could not be distributed:")
        print_table(report["posts"]["failed"], [("id", "post"), ("slug", "forum"),
                                                ("subject", "subject"), ("reason", "reason")])
    holds = report["holds"]
    click.echo(f"Held posts: {holds['held']} waiting" + (
        f", oldest {age(holds['oldest_seconds'])} (see 'listserv held list')"
        if holds["held"] else ""))
    queue = report["queue"]
    _print_counts("Outbound queue", queue["counts"])
    click.echo(f"Oldest waiting delivery: {age(queue['oldest_waiting_seconds'])}")
    click.echo(f"Crash window: a crash may send at most {queue['crash_window']} recipients "
               f"a copy twice ([delivery] crash_window)")
    if report["bounces"]:
        click.echo("\nRecent bounces:")
        print_table(report["bounces"], [("at", "at"), ("recipient", "recipient"),
                                        ("code", "code"), ("detail", "detail")])
    for key, _collect, describe in SECTIONS:
        click.echo()
        for line in describe(report[key]):
            click.echo(line)


def _print_counts(label: str, counts: dict) -> None:
    shown = ", ".join(f"{status} {number}" for status, number in counts.items() if number)
    click.echo(f"{label}: {shown or 'none'}")
