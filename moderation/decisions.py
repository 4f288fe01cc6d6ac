"""A facilitator's decision on a held post, carried out in full, once.

`carry_out` is the one path for every decision, whether it came by reply
(via "email") or from `listserv held` (via "cli"): it records the decision
through holds.decide (the first decision wins), changes the sender's
standing for accept-always and ban, and tells a rejected post's poster the
reason, all in one transaction. Writes `holds`, `posts`, `senders` and,
through notices.py, the outbound queue.
"""

from __future__ import annotations

import logging
from datetime import datetime

from moderation import holds, rules
from moderation.holds import HoldError
from moderation.notices import notify_rejection, parse_stored

log = logging.getLogger(__name__)

STANDING = {"accept-always": "accept", "ban": "ban"}


def sender_of_hold(db, hold: dict) -> str | None:
    """The held post's one From address, or None when its From is ambiguous."""
    parsed = parse_stored(db, hold["message_id"])
    return parsed.sender[1] if parsed is not None and parsed.sender else None


def carry_out(db, site, hold_id: int, word: str, *, by: str, via: str, now: datetime,
              reason: str = "") -> dict:
    """Decide a hold with `word` (approve, reject, discard, accept-always, ban).

    Returns the hold afterwards, with `changed` (False when it was already
    approved and this approves it again) and `told` (the poster got a
    notice). A different second decision raises HoldError naming who decided
    and when."""
    with db.atomic():
        hold = holds.get_hold(db, hold_id)
        address = None
        if word in STANDING:
            address = sender_of_hold(db, hold)
            if address is None and hold["status"] == "held":
                raise HoldError(f"hold {hold_id} has no single From address, so its sender "
                                f"cannot be accepted always or banned; use approve or discard")
        result = holds.decide(db, hold_id, word, by=by, via=via, now=now, reason=reason)
        result["told"] = False
        if not result["changed"]:
            return result
        if word in STANDING:
            rules.set_standing(db, hold["forum_id"], address, STANDING[word], by=by, via=via,
                               now=now, reason=f"hold {hold_id}")
        if word == "reject":
            result["told"] = notify_rejection(db, site, result, reason, now)
    log.info("hold %s on %s: %s by %s via %s%s", hold_id, hold["slug"], word, by, via,
             f" ({reason})" if reason else "")
    return result
