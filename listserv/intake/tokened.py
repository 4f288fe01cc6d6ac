"""Addresses that carry a code, checked at RCPT: no backscatter through them.

`FORUM-confirm+TOKEN@D`, `FORUM-leave+CODE@D`, a site address with a code
(`whatsnew-confirm+TOKEN@D`, `templates+TOKEN@D`, `relay+CODE@D`) and a
relay's `reply+FORUM@D` are only worth taking when the code is one we
issued and can still act on. Anything else gets a 550 at RCPT, so the
message is never stored and nobody (a forged sender least of all) gets a
reply from us for it: 1,000 random tokens give 1,000 refusals and 0 mails.

`CHECKS` maps an address kind (`addresses.Recipient.kind`) to its checker,
`fn(db, secret, recipient, forum_id, mail_from, now) -> str`: '' when the
address may be taken, else the reply. `FORUM-bounces+TOKEN` must carry a
VERP token we signed; a bare `FORUM-bounces` (a non-VERP report, as Mailman
does) is taken and read after DATA, where it never counts against a member.
Reads `tokens`; writes nothing. Will not spend a token: the pipeline does,
after DATA, in the same order as always.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime

from listserv.mail.addresses import SLUG, Recipient
from listserv.mail.tokens import check_short_mac, read_bounce_token

MAX_CODE = 64  # what we issue is 16 to 40 characters; an address part is at most 64
_CODE = re.compile(r"^[a-z0-9._=-]{1,64}$")


def _token_reply(db, address: str, token: str, forum_id: int | None, now: datetime) -> str:
    """'' for a token we issued that is unused and unexpired (for this forum), else
    the 550 that says which it is."""
    if not _CODE.match(token):
        return f"550 5.1.1 <{address[:100]}>: no such confirmation code here"
    digest = hashlib.sha256(token.encode("ascii")).hexdigest()
    row = db.execute("SELECT forum_id, expires_at, used_at FROM tokens WHERE hash = ?",
                     [digest]).fetchone()
    if row is None:
        return f"550 5.1.1 <{address}>: no such confirmation code here; check that the " \
               f"address was copied whole"
    row_forum, expires_at, used_at = row
    if forum_id is not None and row_forum is not None and row_forum != forum_id:
        return f"550 5.1.1 <{address}>: this code belongs to another forum's address"
    if used_at:
        return f"550 5.7.1 <{address}>: this code was already used on {used_at[:16]} UTC; " \
               f"nothing more can be done with it"
    if expires_at < now.isoformat():
        return f"550 5.7.1 <{address}>: this code expired on {expires_at[:16]} UTC; " \
               f"please start again"
    return ""


def check_confirm(db, secret: bytes, recipient: Recipient, forum_id: int | None,
                  mail_from: str, now: datetime, address: str = "") -> str:
    """FORUM-confirm+TOKEN: a subscription, unsubscription or decision token."""
    if not recipient.detail:
        return f"550 5.1.1 <{address}>: a confirmation address needs its code " \
               f"(reply to the message you received)"
    return _token_reply(db, address, recipient.detail, forum_id, now)


def check_leave(db, secret: bytes, recipient: Recipient, forum_id: int | None,
                mail_from: str, now: datetime, address: str = "") -> str:
    """FORUM-leave+CODE (List-Unsubscribe by mail): the code proves which member it
    is for; it must be the member sending (the envelope sender), as mail clients
    do when they send the unsubscribe message themselves. Plain FORUM-leave is
    the usual confirmed unsubscription and is not checked here."""
    if not recipient.detail:
        return ""
    sender = (mail_from or "").strip("<>").lower()
    if not sender or len(recipient.detail) > MAX_CODE or not check_short_mac(
            secret, recipient.detail, "leave", recipient.slug, sender):
        return f"550 5.7.1 <{address[:100]}>: this unsubscribe address is not for " \
               f"{sender or 'a null sender'}; send 'unsubscribe' to " \
               f"{recipient.slug}-request instead"
    return ""


def check_site_code(db, secret: bytes, recipient: Recipient, forum_id: int | None,
                    mail_from: str, now: datetime, address: str = "") -> str:
    """A site address with a code: a token we issued, or for a relay's
    `reply+FORUM`, a forum name (the hub decides what it has)."""
    if not recipient.detail:
        return ""
    if recipient.slug == "reply":
        return "" if SLUG.match(recipient.detail) else \
            f"550 5.1.1 <{address[:100]}>: '{recipient.detail[:64]}' is not a forum name"
    return _token_reply(db, address, recipient.detail, None, now)


def check_bounces(db, secret: bytes, recipient: Recipient, forum_id: int | None,
                  mail_from: str, now: datetime, address: str = "") -> str:
    """FORUM-bounces+TOKEN: the token must be one we signed for this forum's copy.
    Plain FORUM-bounces is taken (a report without VERP; it is logged, never counted)."""
    if not recipient.detail:
        return ""
    if len(recipient.detail) > MAX_CODE or read_bounce_token(
            secret, f"{recipient.slug}-bounces+{recipient.detail}") is None:
        return f"550 5.1.1 <{address[:100]}>: no such bounce address here; this " \
               f"address is only for reports about mail we sent"
    return ""


CHECKS: dict[str, Callable[..., str]] = {
    "confirm": check_confirm,
    "leave": check_leave,
    "site": check_site_code,
    "bounces": check_bounces,
}
