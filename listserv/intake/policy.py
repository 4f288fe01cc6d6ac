"""Posting policy: what happens to a post, and why, before anyone sees it.

Pure decisions over a parsed message and the forum's rows: `decide_post`
answers one of distribute, hold, refuse or ignore with a reason. Reads
members and facilitators; writes nothing. Will not send or store anything:
the pipeline (`pipeline.py`) carries the decision out.
"""

from __future__ import annotations

from dataclasses import dataclass

from listserv.delivery.distribution import list_id
from listserv.delivery.notify import forum_addresses
from listserv.mail.message import Parsed
from listserv.site.forums import is_facilitator
from listserv.site.members import find as find_member


@dataclass(frozen=True)
class Decision:
    action: str  # distribute, hold, refuse, ignore
    reason: str = ""
    rule: str = ""  # which rule decided a hold: bulk, sender, malformed, moderated, non-member


def is_loop(parsed: Parsed, forum: dict, domain: str) -> str:
    """Why this post already went through this forum (or is our own mail), else ''."""
    addresses = forum_addresses(forum["slug"], domain)
    if any(list_id(forum, domain) in value for value in parsed.list_ids):
        return "it already carries this forum's List-Id"
    if any(addresses["post"] in value for value in parsed.loops):
        return "it already carries this forum's loop header"
    if parsed.sender and parsed.sender[1].endswith("@" + domain):
        return f"it comes from this site's own address {parsed.sender[1]}"
    return ""


def decide_post(db, forum: dict, parsed: Parsed, domain: str) -> Decision:
    """The forum's posting policy applied to one post."""
    if parsed.bounce:
        return Decision("ignore", "a delivery status notification (bounce) sent to the forum")
    if parsed.auto:
        return Decision("ignore", f"automatic mail ({parsed.auto}) is never redistributed")
    loop = is_loop(parsed, forum, domain)
    if loop:
        return Decision("ignore", f"mail loop: {loop}")
    if parsed.bulk:
        return Decision("hold", f"bulk mail ({parsed.bulk}) sent to the forum; a "
                                f"facilitator decides (no automatic notice is sent)", "bulk")
    if parsed.sender is None:
        return Decision("hold", "the From header is missing, has several addresses or "
                                "does not parse; a facilitator must check the sender", "sender")
    serious = parsed.serious_defects
    if serious:
        return Decision("hold", f"malformed MIME ({', '.join(serious[:3])})", "malformed")
    address = parsed.sender[1]
    facilitator = is_facilitator(db, forum["id"], address)
    member = find_member(db, forum["id"], address)
    policy = forum["policy"]
    if policy == "announce":
        if facilitator:
            return Decision("distribute")
        return Decision("refuse", "this forum is for announcements by its facilitators only")
    if policy == "moderated":
        if facilitator:
            return Decision("distribute")
        return Decision("hold", "every post to this forum is moderated", "moderated")
    if policy == "members" and not (member or facilitator):
        return Decision("hold", f"{address} is not a member of this forum", "non-member")
    return Decision("distribute")
