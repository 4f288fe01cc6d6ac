"""`listserv held ...`: the hold queue from the command line.

Lists held posts, shows one with its message, and carries out the
secretariat's decisions through moderation.decisions.carry_out (via "cli",
by the local user), the path decisions by reply take too. A rejection
queues a notice with the reason to the poster in the same transaction as
the decision, so neither is lost without the other.
Approved posts go back to the pipeline; the running server distributes
them. Reads `holds`, `posts` and `messages`; writes through holds.py and
the outbound queue only.
"""

from __future__ import annotations

import click

from listserv.cli.common import (
    json_option,
    local_user,
    pass_site,
    print_fields,
    print_json,
    print_table,
    say,
    server_pid,
    utcnow,
)
from listserv.errors import MessageError
from listserv.site import forums
from listserv.site.folder import Site
from moderation import holds

SHOWN_HEADERS = ("From", "To", "Cc", "Date", "Subject", "Message-ID")
SHOWN_LINES = 40


@click.group()
def held() -> None:
    """List held posts and approve, reject or discard them."""


@held.command("list")
@click.argument("slug", required=False)
@json_option
@pass_site
def held_list(site: Site, slug: str | None, as_json: bool) -> None:
    """List the posts waiting for a decision, oldest first (all forums, or SLUG's)."""
    if slug:
        forums.get(site.db, slug)  # a clear error for an unknown forum
    rows = holds.list_holds(site.db, slug)
    if as_json:
        print_json(rows)
        return
    print_table([dict(row, created=row["created_at"][:16]) for row in rows],
                [("id", "id"), ("slug", "forum"), ("created", "held since"),
                 ("sender", "from"), ("subject", "subject"), ("reason", "reason")],
                empty="No posts are held." if not slug else f"No posts are held on '{slug}'.")


@held.command("show")
@click.argument("hold_id", metavar="ID", type=int)
@json_option
@pass_site
def held_show(site: Site, hold_id: int, as_json: bool) -> None:
    """Show one held post: why it is held, its headers and the start of its text."""
    hold = holds.get_hold(site.db, hold_id)
    row = site.db.execute("SELECT raw FROM messages WHERE id = ?",
                          [hold["message_id"]]).fetchone()
    headers, text, problem = _read_message(row[0] if row else None)
    if as_json:
        print_json({**hold, "headers": headers, "text": text, "problem": problem})
        return
    print_fields([("Hold", hold["id"]), ("Forum", hold["slug"]), ("Status", hold["status"]),
                  ("Reason", hold["reason"]), ("Held since", hold["created_at"][:19])]
                 + ([("Decided", f"{hold['decided_by']} via {hold['decided_via']} at "
                                 f"{(hold['decided_at'] or '')[:19]}")]
                    if hold["status"] != "held" else []))
    click.echo()
    for name, value in headers.items():
        click.echo(f"{name}: {value}")
    if problem:
        click.echo(f"({problem})")
    click.echo()
    lines = text.splitlines()
    for line in lines[:SHOWN_LINES]:
        click.echo(line)
    if len(lines) > SHOWN_LINES:
        click.echo(f"[... {len(lines) - SHOWN_LINES} more lines]")


def _read_message(raw: bytes | None) -> tuple[dict, str, str]:
    """(headers, text, problem) of a stored message, never raising."""
    if raw is None:
        return {}, "", "the message itself is missing from the store"
    from listserv.mail.message import parse
    from listserv.mail.text import text_body

    try:
        parsed = parse(bytes(raw))
    except MessageError as error:
        head = bytes(raw)[:4000].decode("utf-8", "replace")
        return {}, head, f"the message cannot be read safely: {error}; its first bytes follow"
    headers = {name: parsed.header(name) for name in SHOWN_HEADERS if parsed.header(name)}
    try:
        text = text_body(parsed.message, limit=20_000)
    except Exception as error:  # text_body guards itself; belt and braces on hostile mail
        return headers, "", f"the text cannot be read: {type(error).__name__}"
    return headers, text, "" if text else "no text part"


def _decide(site: Site, hold_id: int, decision: str, reason: str = "") -> dict:
    """The same decision path as a facilitator's reply (moderation.decisions),
    in one transaction: the decision, the sender's standing, the poster's notice."""
    from moderation.decisions import carry_out

    return carry_out(site.db, site, hold_id, decision, by=local_user(), via="cli",
                     now=utcnow(), reason=reason)


@held.command("approve")
@click.argument("hold_id", metavar="ID", type=int)
@pass_site
def held_approve(site: Site, hold_id: int) -> None:
    """Approve a held post: it goes to every member of its forum."""
    hold = _decide(site, hold_id, "approve")
    if not hold["changed"]:
        say(f"Hold {hold_id} was already approved; nothing changed")
        return
    say(f"Approved hold {hold_id} on '{hold['slug']}': {hold['subject'] or '(no subject)'}")
    if server_pid(site) is None:
        say("No server is running: the post is distributed when 'listserv serve' starts")


@held.command("reject")
@click.argument("hold_id", metavar="ID", type=int)
@click.option("--reason", default="", help="Why, in a line; the poster is told.")
@pass_site
def held_reject(site: Site, hold_id: int, reason: str) -> None:
    """Reject a held post; the poster gets a notice with the reason."""
    hold = _decide(site, hold_id, "reject", " ".join(reason.split()))
    told = f"; {hold['sender']} is told" if hold.get("told") else "; the poster is not told"
    say(f"Rejected hold {hold_id} on '{hold['slug']}'{told}" + (f": {reason}" if reason else ""))


@held.command("discard")
@click.argument("hold_id", metavar="ID", type=int)
@pass_site
def held_discard(site: Site, hold_id: int) -> None:
    """Discard a held post silently (spam): nobody is told."""
    hold = _decide(site, hold_id, "discard")
    say(f"Discarded hold {hold_id} on '{hold['slug']}'")


@held.command("accept-always")
@click.argument("hold_id", metavar="ID", type=int)
@pass_site
def held_accept_always(site: Site, hold_id: int) -> None:
    """Approve a held post and stop holding its sender for who they are."""
    hold = _decide(site, hold_id, "accept-always")
    if not hold["changed"]:
        say(f"Hold {hold_id} was already approved; nothing changed")
        return
    say(f"Approved hold {hold_id} on '{hold['slug']}'; {hold['sender']} is no longer held "
        f"for who they are")


@held.command("ban")
@click.argument("hold_id", metavar="ID", type=int)
@pass_site
def held_ban(site: Site, hold_id: int) -> None:
    """Discard a held post and discard its sender's posts from now on."""
    hold = _decide(site, hold_id, "ban")
    say(f"Discarded hold {hold_id} on '{hold['slug']}'; {hold['sender']} is banned there")


@held.command("log")
@click.argument("slug", required=False)
@json_option
@pass_site
def held_log(site: Site, slug: str | None, as_json: bool) -> None:
    """List the decisions taken on held posts, latest first."""
    if slug:
        forums.get(site.db, slug)
    rows = holds.decision_log(site.db, slug)
    if as_json:
        print_json(rows)
        return
    print_table([dict(row, at=(row["decided_at"] or "")[:16],
                      decision=row["decision"] or row["status"],
                      who=f"{row['decided_by']} ({row['decided_via']})") for row in rows],
                [("id", "id"), ("slug", "forum"), ("decision", "decision"), ("at", "at"),
                 ("who", "by"), ("sender", "from"), ("subject", "subject"),
                 ("decision_reason", "reason")],
                empty="No decisions yet.")
