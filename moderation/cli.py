"""`listserv request ...` and `listserv sender ...`: moderation from the command line.

`request` lists the subscription requests waiting for a facilitator (forums
with subscription = approve) and decides them through requests.py, the
path replies by mail take too (via "cli", by the local user). `sender`
lists and sets senders' standing per forum: accept (never held for who
they are) or ban (their posts are discarded). Held posts themselves are
`listserv held ...` (listserv/cli/held.py). Thin commands: parse, call one
function, print; writes through requests.py and rules.py only.
"""

from __future__ import annotations

import click

from listserv.cli.common import (
    json_option,
    local_user,
    pass_site,
    print_json,
    print_table,
    say,
    utcnow,
)
from listserv.site import forums
from listserv.site.folder import Site
from moderation import requests, rules


@click.group("request")
def request_group() -> None:
    """List subscription requests waiting for approval, and approve or reject them."""


@request_group.command("list")
@click.argument("slug", required=False)
@click.option("--all", "everything", is_flag=True, help="Decided requests too, with who decided.")
@json_option
@pass_site
def request_list(site: Site, slug: str | None, everything: bool, as_json: bool) -> None:
    """List subscription requests waiting for a decision (all forums, or SLUG's)."""
    if slug:
        forums.get(site.db, slug)
    rows = requests.list_requests(site.db, slug, None if everything else "waiting")
    if as_json:
        print_json(rows)
        return
    print_table([dict(row, since=row["created_at"][:16],
                      by=f"{row['decided_by']} ({row['decided_via']})" if row["decided_by"]
                      else "") for row in rows],
                [("id", "id"), ("slug", "forum"), ("status", "status"), ("since", "since"),
                 ("address", "address"), ("by", "decided by"), ("name", "name")],
                empty="No subscription requests are waiting.")


def _decide(site: Site, request_id: int, word: str, reason: str = "") -> dict:
    return requests.decide_request(site.db, site, request_id, word, by=local_user(), via="cli",
                                   now=utcnow(), reason=reason)


@request_group.command("approve")
@click.argument("request_id", metavar="ID", type=int)
@pass_site
def request_approve(site: Site, request_id: int) -> None:
    """Make the requester a member and send the welcome."""
    row = _decide(site, request_id, "approve")
    if not row["changed"]:
        say(f"Request {request_id} was already approved; nothing changed")
        return
    say(f"Approved request {request_id}: {row['address']} joins '{row['slug']}'")


@request_group.command("reject")
@click.argument("request_id", metavar="ID", type=int)
@click.option("--reason", default="", help="Why, in a line; the requester is told.")
@pass_site
def request_reject(site: Site, request_id: int, reason: str) -> None:
    """Refuse a subscription request; the requester is told the reason."""
    row = _decide(site, request_id, "reject", " ".join(reason.split()))
    say(f"Rejected request {request_id} of {row['address']} to '{row['slug']}'")


@request_group.command("discard")
@click.argument("request_id", metavar="ID", type=int)
@pass_site
def request_discard(site: Site, request_id: int) -> None:
    """Refuse a subscription request without telling anyone."""
    row = _decide(site, request_id, "discard")
    say(f"Discarded request {request_id} of {row['address']} to '{row['slug']}'")


@click.group("sender")
def sender_group() -> None:
    """Senders always accepted or banned on a forum."""


@sender_group.command("list")
@click.argument("slug", required=False)
@json_option
@pass_site
def sender_list(site: Site, slug: str | None, as_json: bool) -> None:
    """List senders with a standing (accept, hold or ban), on all forums or SLUG."""
    if slug:
        forums.get(site.db, slug)
    rows = rules.list_standings(site.db, slug)
    if as_json:
        print_json(rows)
        return
    print_table([dict(row, at=row["set_at"][:16], by=f"{row['set_by']} ({row['set_via']})")
                 for row in rows],
                [("slug", "forum"), ("address", "address"), ("standing", "standing"),
                 ("at", "since"), ("by", "set by"), ("reason", "reason")],
                empty="No sender has a standing.")


def _set(site: Site, slug: str, address: str, standing: str, reason: str) -> None:
    forum = forums.get(site.db, slug)
    with site.db.atomic():
        rules.set_standing(site.db, forum["id"], address, standing, by=local_user(), via="cli",
                           now=utcnow(), reason=" ".join(reason.split()))


@sender_group.command("accept")
@click.argument("slug")
@click.argument("address")
@click.option("--reason", default="", help="A note for the other facilitators.")
@pass_site
def sender_accept(site: Site, slug: str, address: str, reason: str) -> None:
    """Never hold ADDRESS's posts to SLUG for who sends them (content rules still apply)."""
    _set(site, slug, address, "accept", reason)
    say(f"{address} is always accepted on '{slug}'")


@sender_group.command("ban")
@click.argument("slug")
@click.argument("address")
@click.option("--reason", default="", help="A note for the other facilitators.")
@pass_site
def sender_ban(site: Site, slug: str, address: str, reason: str) -> None:
    """Discard ADDRESS's posts to SLUG from now on, without notice."""
    _set(site, slug, address, "ban", reason)
    say(f"{address} is banned from '{slug}'")


@sender_group.command("hold")
@click.argument("slug")
@click.argument("address")
@click.option("--reason", default="", help="A note for the other facilitators.")
@pass_site
def sender_hold(site: Site, slug: str, address: str, reason: str) -> None:
    """Hold every post of ADDRESS to SLUG for a facilitator, member or not."""
    _set(site, slug, address, "hold", reason)
    say(f"{address}'s posts to '{slug}' are held from now on")


@sender_group.command("clear")
@click.argument("slug")
@click.argument("address")
@pass_site
def sender_clear(site: Site, slug: str, address: str) -> None:
    """Remove ADDRESS's standing on SLUG: its posts follow the forum's rules again."""
    forum = forums.get(site.db, slug)
    with site.db.atomic():
        rules.clear_standing(site.db, forum["id"], address)
    say(f"{address} has no standing on '{slug}' any more")
