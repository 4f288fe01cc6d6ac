"""Leaving in one step, and coming back in one reply.

Mail clients' unsubscribe buttons send exactly one mail and never answer a
confirmation. So a mail to the plain FORUM-leave@D whose envelope sender is
the member's own From address removes the member at once (`leave_at_once`),
as do the per-member FORUM-leave+TOKEN@D and the one-click link. The "you
have left" notice then carries a FORUM-confirm+TOKEN address: one reply
(`handle_rejoin`) makes the address a member again with the settings it
had, so a forged leave is undone in one step. Writes `members`, `events`,
`tokens` and, through notify.py, the queue.
"""

from __future__ import annotations

import logging
from datetime import datetime

from listserv.delivery.notify import send_template
from listserv.errors import ListservError
from listserv.intake.subscriptions import unsubscribe
from listserv.mail.tokens import issue_token, peek_token, use_token
from listserv.site import members

log = logging.getLogger(__name__)

REJOIN = "rejoin"
REJOIN_SECONDS = 30 * 86400
KEPT = ("name", "language", "mode", "profile", "region", "charter_accepted_at")


def rejoin_address(db, site, forum: dict, member: dict, now: datetime) -> str:
    """A confirm address that makes `member` a member again, as they were."""
    token = issue_token(db, REJOIN, forum_id=forum["id"], address=member["address"],
                        data={key: member[key] for key in KEPT}, now=now,
                        lifetime_seconds=REJOIN_SECONDS)
    return f"{forum['slug']}-confirm+{token}@{site.settings.domain}"


def leave_at_once(db, site, forum: dict, address: str, now: datetime, how: str, *,
                  ref: str = "", in_reply_to: str = "") -> bool:
    """Remove the member now; the goodbye lets them rejoin with one reply.
    False when `address` is no member."""
    member = members.find(db, forum["id"], address)
    if member is None:
        return False
    return unsubscribe(db, site, forum, address, now, how, ref=ref, in_reply_to=in_reply_to,
                       rejoin_address=rejoin_address(db, site, forum, member, now))


def handle_rejoin(db, site, forum: dict, token: str, parsed, message_row_id: int,
                  now: datetime) -> bool:
    """A reply to a goodbye's rejoin address; False when the token is not one."""
    try:
        row = peek_token(db, token, REJOIN)
    except ListservError:
        return False
    if row["forum_id"] != forum["id"]:
        return False
    try:
        use_token(db, token, REJOIN, now)
    except ListservError as error:
        log.info("message %s: rejoin refused: %s", message_row_id, error)
        return True
    kept = row["data"]
    address = row["address"]
    if members.find(db, forum["id"], address) is None:
        members.add(db, forum["slug"], address, now=now, languages=site.settings.site.languages,
                    name=kept.get("name") or "", language=kept.get("language"),
                    mode=kept.get("mode") or "each", profile=kept.get("profile") or "email",
                    region=kept.get("region") or "",
                    charter_accepted=bool(kept.get("charter_accepted_at")), how="rejoin")
    added = members.find(db, forum["id"], address)
    send_template(db, site, "welcome.txt", to=address, language=added["language"],
                  ref=f"reply:{message_row_id}", now=now, forum=forum,
                  in_reply_to=parsed.message_id if parsed else "", address=address,
                  member_name=added["name"], mode=added["mode"], profile=added["profile"],
                  member_language=added["language"],
                  charter_accepted_at=(added["charter_accepted_at"] or "")[:16].replace("T", " "))
    log.info("message %s: %s rejoined %s in one reply", message_row_id, address, forum["slug"])
    return True
