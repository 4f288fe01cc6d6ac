"""Leaving in one step, and coming back in one reply.

Mail clients' unsubscribe buttons send exactly one mail and never answer a
confirmation. So a mail to the plain FORUM-leave@D whose envelope sender is
the member's own From address removes the member at once (`leave_at_once`),
as do the per-member FORUM-leave+TOKEN@D and the one-click link. The "you
have left" notice then carries a FORUM-confirm+TOKEN address: one reply
(`handle_rejoin`) makes the address a member again with the settings it
had, so a forged leave is undone in one step. Writes `members`, `events`,
`tokens` and, through notify.py, the queue. `leave_by_mail` and
`one_click_unsubscribe` are the two one-step ways out. Will not confirm
subscriptions (`subscriptions.py`, which this calls and which never calls back).
"""

from __future__ import annotations

import logging
from datetime import datetime

from listserv.delivery.notify import send_template
from listserv.errors import ListservError, TokenError
from listserv.intake.subscriptions import unsubscribe
from listserv.mail.tokens import check_short_mac, issue_token, peek_token, read_link, use_token
from listserv.site import members
from listserv.site.forums import find as find_forum

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


def leave_by_mail(db, site, forum: dict, code: str, sender: str | None, now: datetime) -> str:
    """Mail to a member's own leave address (from List-Unsubscribe) removes the
    member at once when it comes from the address the code was made for."""
    if not sender or not check_short_mac(site.secret, code, "leave", forum["slug"],
                                         sender.lower()):
        raise TokenError("this leave address was made for another member's address; "
                         "write to the forum's -leave address to unsubscribe")
    if leave_at_once(db, site, forum, sender, now, "one-click"):
        return f"{sender} has left the forum '{forum['title']}'."
    return f"{sender} is not (or no longer) a member of the forum '{forum['title']}'."


def one_click_unsubscribe(db, site, token: str, now: datetime) -> str:
    """Remove the member named in a signed leave link (RFC 8058); doing it twice
    changes nothing. Returns a sentence for the person; TokenError when the
    link is not ours."""
    parts = read_link(site.secret, token)
    if len(parts) != 3 or parts[0] != "u":
        raise TokenError("this link is not an unsubscribe link")
    _, slug, address = parts
    forum = find_forum(db, slug)
    if forum is None:
        raise TokenError(f"the forum '{slug}' of this link no longer exists")
    if leave_at_once(db, site, forum, address, now, "one-click"):
        return f"{address} has left the forum '{forum['title']}'."
    return f"{address} is not (or no longer) a member of the forum '{forum['title']}'."
