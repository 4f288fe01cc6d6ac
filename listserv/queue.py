"""The outbound queue's front door: rendered bodies and the rows that send them.

Every message the site sends goes through here: its bytes are stored once in
`bodies`, and one `deliveries` row per recipient says who still needs it.
A row's key is (ref, recipient): `ref` names the logical send ("post:17",
"reply:42"), so queuing the same send twice reaches no one twice. Writes
`bodies` and `deliveries`; the delivery workers in `delivery.py` move the
rows on (queued -> sending -> sent / deferred / bounced / failed).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from email.message import Message

from listserv.addresses import domain_of
from listserv.mail import to_bytes

STATUSES = ("queued", "sending", "deferred", "sent", "bounced", "failed")


def store_body(db, ref: str, raw: bytes, now: datetime, forum_id: int | None = None,
               personal: bool = False) -> int:
    """Keep the bytes of one outgoing message once; returns its id (plain SQL,
    as in `intake.store_incoming`: once per post, on the pipeline's path)."""
    return db.execute(
        "INSERT INTO bodies (ref, raw, forum_id, personal, created_at) VALUES (?, ?, ?, ?, ?)",
        [ref, raw, forum_id, int(personal), now.isoformat()]).lastrowid


def enqueue(db, ref: str, body_id: int, recipients: Iterable[str], sender: str,
            now: datetime) -> int:
    """Queue `body_id` to each recipient once; returns how many rows are new."""
    stamp = now.timestamp()
    rows = [(ref, body_id, r, domain_of(r), sender, stamp, stamp) for r in recipients]
    before = db.conn.total_changes
    db.conn.executemany(
        "INSERT OR IGNORE INTO deliveries (ref, body_id, recipient, domain, sender, next_at, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return db.conn.total_changes - before


def enqueue_members(db, ref: str, body_id: int, sender: str, now: datetime, *,
                    forum_id: int, mode: str, profile: str, exclude: str = "") -> int:
    """Queue a body to every member of a forum with `mode` and `profile`, in
    one statement inside SQLite: no member list is held in memory."""
    stamp = now.timestamp()
    before = db.conn.total_changes
    db.execute(
        "INSERT OR IGNORE INTO deliveries (ref, body_id, recipient, domain, sender, next_at, "
        "created_at) SELECT ?, ?, address, domain, ?, ?, ? FROM members "
        "WHERE forum_id = ? AND mode = ? AND profile = ? AND address != ? "
        "ORDER BY domain, address",
        [ref, body_id, sender, stamp, stamp, forum_id, mode, profile, exclude])
    return db.conn.total_changes - before


def enqueue_select(db, ref: str, body_id: int, sender: str, now: datetime, select: str,
                   params: Iterable = ()) -> int:
    """Queue a body to the recipients a query selects (its columns: address,
    domain), in one statement inside SQLite; returns how many rows are new.
    `select` is our own SQL (values go in `params`), never text from outside."""
    stamp = now.timestamp()
    before = db.conn.total_changes
    db.execute(
        "INSERT OR IGNORE INTO deliveries (ref, body_id, recipient, domain, sender, next_at, "
        f"created_at) SELECT ?, ?, address, domain, ?, ?, ? FROM ({select}) "
        "ORDER BY domain, address", [ref, body_id, sender, stamp, stamp, *params])
    return db.conn.total_changes - before


def queue_message(db, ref: str, message: Message | bytes, recipients: Iterable[str],
                  sender: str, now: datetime, forum_id: int | None = None) -> int:
    """Store one message and queue it to `recipients`; the whole send at once."""
    recipients = list(recipients)
    if not recipients:
        return 0
    raw = message if isinstance(message, bytes) else to_bytes(message)
    body_id = store_body(db, ref, raw, now, forum_id)
    return enqueue(db, ref, body_id, recipients, sender, now)


def summary(db, now: float | None = None) -> dict:
    """Counts by status, the oldest waiting row, and the latest failures."""
    now = time.time() if now is None else now
    counts = {status: 0 for status in STATUSES}
    for status, number in db.execute("SELECT status, count(*) FROM deliveries GROUP BY status"):
        counts[status] = number
    oldest = db.execute("SELECT min(created_at) FROM deliveries "
                        "WHERE status IN ('queued', 'deferred', 'sending')").fetchone()[0]
    failed = list(db.query(
        "SELECT id, ref, recipient, status, attempts, last_error FROM deliveries "
        "WHERE status IN ('failed', 'bounced') ORDER BY id DESC LIMIT 20"))
    deferred = list(db.query(
        "SELECT id, ref, recipient, attempts, next_at, last_error FROM deliveries "
        "WHERE status = 'deferred' ORDER BY next_at LIMIT 20"))
    return {"counts": counts,
            "oldest_waiting_seconds": round(now - oldest, 1) if oldest else None,
            "failed": failed, "deferred": deferred}
