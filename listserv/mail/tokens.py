"""Single-use secret tokens, stored hashed, and signed stateless links.

`issue_token` makes a random 128-bit+ token for one purpose (confirming a
subscription, a facilitator's decision) and stores only its SHA-256;
`use_token` spends it once, before it expires. `sign_link`/`read_link` make
and check the HMAC-signed tokens of one-click unsubscribe links, which need
no row; `short_mac` is the short form for leave addresses, checked against
the sender; `bounce_token`/`read_bounce_token` make and read the signed
detail of a copy's VERP bounce address. Writes the `tokens` table only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from datetime import datetime, timedelta

from listserv.errors import TokenError


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def issue_token(db, purpose: str, *, forum_id: int | None, address: str, data: dict,
                now: datetime, lifetime_seconds: int) -> str:
    token = secrets.token_hex(16)  # 128 bits, safe in an address local part
    db["tokens"].insert({
        "hash": _hash(token), "purpose": purpose, "forum_id": forum_id, "address": address,
        "data": json.dumps(data), "created_at": now.isoformat(),
        "expires_at": (now + timedelta(seconds=lifetime_seconds)).isoformat(),
    })
    return token


def peek_token(db, token: str, purpose: str) -> dict:
    """The token's row, checked but not spent."""
    rows = list(db.query("SELECT * FROM tokens WHERE hash = ? AND purpose = ?",
                         [_hash(token), purpose]))
    if not rows:
        raise TokenError("this confirmation code is not known here; it may be mistyped")
    row = rows[0]
    row["data"] = json.loads(row["data"])
    return row


def use_token(db, token: str, purpose: str, now: datetime) -> dict:
    """Spend a token once; TokenError if unknown, used or expired."""
    row = peek_token(db, token, purpose)
    if row["used_at"]:
        raise TokenError(f"this confirmation code was already used on {row['used_at'][:16]}")
    if row["expires_at"] < now.isoformat():
        raise TokenError("this confirmation code has expired; please start again")
    db.execute("UPDATE tokens SET used_at = ? WHERE id = ?", [now.isoformat(), row["id"]])
    return row


def sign_link(secret: bytes, *parts: str) -> str:
    """A URL- and address-safe token that proves we issued `parts` (keep them short)."""
    payload = "\n".join(parts).encode("utf-8")
    mac = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
    return _b32(payload) + "." + _b32(mac)


def _b32(data: bytes) -> str:
    """Lower-case base32: survives case-folding of address local parts."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
    text = text.upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def read_link(secret: bytes, token: str) -> list[str]:
    """The parts signed into `token`; TokenError when it was not ours."""
    try:
        body, mac = token.split(".")
        payload, given = _unb32(body), _unb32(mac)
    except Exception:
        raise TokenError("this link is damaged; please unsubscribe by email instead") from None
    expected = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(given, expected):
        raise TokenError("this link was not issued by this site")
    return payload.decode("utf-8").split("\n")


def short_mac(secret: bytes, *parts: str) -> str:
    """16 lower-case base32 characters (80 bits) proving we issued `parts`;
    short enough for an address's local part (RFC 5321: 64 octets)."""
    payload = "\n".join(parts).encode("utf-8")
    return _b32(hmac.new(secret, payload, hashlib.sha256).digest()[:10])


def check_short_mac(secret: bytes, mac: str, *parts: str) -> bool:
    return hmac.compare_digest(mac.lower(), short_mac(secret, *parts))


# VERP bounce addresses (FORUM-bounces+TOKEN@D): here, not in delivery/, so that
# the SMTP edge (intake) can refuse forged tokens at RCPT.
_TOKEN = re.compile(r"^([0-9a-z]{1,12})\.([a-z2-7]{16})$")


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def bounce_token(secret: bytes, slug: str, delivery_id: int) -> str:
    """The detail of a copy's own bounce address: its delivery id and a MAC."""
    return f"{_base36(delivery_id)}.{short_mac(secret, 'verp', slug, str(delivery_id))}"


def verp_sender(secret: bytes, sender: str, delivery_id: int, domain: str) -> str:
    """FORUM-bounces@D -> FORUM-bounces+TOKEN@D for one delivery row; any other
    sender (not at our domain `domain`, not a forum's bounces address, or
    already carrying a detail) is kept."""
    local, _, sender_domain = sender.rpartition("@")
    if sender_domain.lower() != domain.lower() or "+" in local or \
            not local.endswith("-bounces") or local == "-bounces":
        return sender
    slug = local[:-len("-bounces")]
    return f"{local}+{bounce_token(secret, slug, delivery_id)}@{sender_domain}"


def read_bounce_token(secret: bytes, local_part: str) -> tuple[str, int] | None:
    """(forum slug, delivery id) of a `FORUM-bounces+TOKEN` local part whose
    token we issued, else None. Pure: reads no database."""
    base, plus, detail = (local_part or "").partition("+")
    base = base.lower()
    if not plus or not base.endswith("-bounces") or base == "-bounces":
        return None
    match = _TOKEN.match(detail.lower())
    if match is None:
        return None
    slug, delivery_id = base[:-len("-bounces")], int(match.group(1), 36)
    if not check_short_mac(secret, match.group(2), "verp", slug, str(delivery_id)):
        return None
    return slug, delivery_id


def bounce_token_valid(secret: bytes, local_part: str) -> bool:
    """Whether a `FORUM-bounces+...` local part carries a token this site issued
    (for the SMTP edge: refuse the others at RCPT)."""
    return read_bounce_token(secret, local_part) is not None
