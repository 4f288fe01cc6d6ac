"""The outbound queue's front door: rendered bodies and the rows that send them.

Every message the site sends goes through here: its bytes are stored once in
`bodies`, and `deliveries` rows say who still needs it: one per recipient,
or, for a post's copies to a forum's members, one per batch (the members of
one domain that go in one SMTP transaction, `recipients` as a JSON array),
so a fan-out writes a row per transaction rather than per member. A row's
key is (ref, recipient) (a batch's first recipient): `ref` names the logical
send ("post:17", "reply:42"), so queuing the same send twice reaches no one
twice. `split_off` gives one recipient of a batch a row of its own, when its
delivery ends differently from the rest. Writes `bodies` and `deliveries`;
the delivery workers in `engine.py` move the rows on (queued -> sending ->
sent / deferred / bounced / failed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime
from email.message import Message

from listserv.mail.addresses import domain_of
from listserv.mail.compose import to_bytes

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
    recipients = list(recipients)
    if db.execute("SELECT 1 FROM deliveries WHERE ref = ? AND recipients IS NOT NULL LIMIT 1",
                  [ref]).fetchone():  # queued in batches before: nobody in them again
        queued = set(_recipients_of(db, ref))
        recipients = [r for r in recipients if r not in queued]
    rows = [(ref, body_id, r, domain_of(r), sender, stamp, stamp) for r in recipients]
    before = db.conn.total_changes
    db.conn.executemany(
        "INSERT OR IGNORE INTO deliveries (ref, body_id, recipient, domain, sender, next_at, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return db.conn.total_changes - before


def enqueue_members(db, ref: str, body_id: int, sender: str, now: datetime, *,
                    forum_id: int, mode: str, profile: str, exclude: str = "",
                    batch: int = 1) -> int:
    """Queue a body to every member of a forum with `mode` and `profile`,
    inside SQLite (batches hold one domain's members in memory at a time). With
    `batch` over 1, the members of each domain go in rows of up to `batch`
    (one SMTP transaction each). Returns how many recipients are newly queued."""
    return enqueue_select(
        db, ref, body_id, sender, now,
        "SELECT address, domain FROM members WHERE forum_id = ? AND mode = ? "
        "AND profile = ? AND address != ? AND delivery = 'enabled'",
        [forum_id, mode, profile, exclude], batch=batch)


def _queued_for(db, ref: str) -> int:
    return db.execute("SELECT coalesce(sum(size), 0) FROM deliveries WHERE ref = ?",
                      [ref]).fetchone()[0]


# Everyone queued for a send, in batches or alone.
_QUEUED = ("SELECT value FROM deliveries d, json_each(coalesce(d.recipients, "
           "json_array(d.recipient))) WHERE d.ref = ?")


def _recipients_of(db, ref: str) -> list[str]:
    return [row[0] for row in db.execute(_QUEUED, [ref])]


def split_off(db, row_id: int, recipient: str) -> int | None:
    """Give `recipient` of the batch in row `row_id` a row of its own (a copy of
    the batch's, for that recipient alone); returns the new row's id. The
    batch keeps the others. None when the row is not a batch that names
    `recipient` (the caller then means the row itself)."""
    found = db.execute("SELECT recipients FROM deliveries WHERE id = ?", [row_id]).fetchone()
    if found is None or found[0] is None:
        return None
    batch = json.loads(found[0])
    if recipient not in batch or len(batch) < 2:
        return None
    batch.remove(recipient)
    # The batch's key moves to one it keeps before the new row takes the recipient.
    db.execute("UPDATE deliveries SET recipient = ?, size = ?, recipients = ? WHERE id = ?",
               [min(batch), len(batch), json.dumps(batch) if len(batch) > 1 else None, row_id])
    return db.execute(
        "INSERT INTO deliveries (ref, body_id, recipient, domain, sender, status, attempts, "
        "next_at, created_at, sent_at, last_error) SELECT ref, body_id, ?, domain, sender, "
        "status, attempts, next_at, created_at, sent_at, last_error FROM deliveries "
        "WHERE id = ?", [recipient, row_id]).lastrowid


def enqueue_select(db, ref: str, body_id: int, sender: str, now: datetime, select: str,
                   params: Iterable = (), batch: int = 1) -> int:
    """Queue a body to the recipients a query selects (its columns: address,
    domain): in one statement inside SQLite, or with `batch` over 1, those
    of each domain in rows of up to `batch` (`_batch_rows`). Returns how many
    recipients are newly queued: a recipient already queued for `ref` (alone or in a batch)
    is not queued again. `select` is our own SQL (values go in `params`),
    never text from outside."""
    stamp = now.timestamp()
    params = list(params)
    before = _queued_for(db, ref)
    if before:  # queued before (the recipients may have changed since): the others only
        select = f"SELECT address, domain FROM ({select}) WHERE address NOT IN ({_QUEUED})"
        params.append(ref)
    if batch <= 1:
        db.execute(
            "INSERT OR IGNORE INTO deliveries (ref, body_id, recipient, domain, sender, next_at, "
            f"created_at) SELECT ?, ?, address, domain, ?, ?, ? FROM ({select}) "
            "ORDER BY domain, address", [ref, body_id, sender, stamp, stamp, *params])
    else:  # the domains' members from SQLite, a domain at a time; batches cut here
        db.conn.executemany(
            "INSERT OR IGNORE INTO deliveries (ref, body_id, recipient, domain, sender, next_at, "
            "created_at, recipients, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _batch_rows(db, select, params, batch, (ref, body_id), (sender, stamp, stamp)))
    return _queued_for(db, ref) - before


def _batch_rows(db, select: str, params: list, batch: int, head: tuple, tail: tuple):
    """(ref, body_id, first, domain, sender, next_at, created_at, recipients, size)
    for each batch of up to `batch` distinct recipients of one domain, in
    address order. SQLite hands over one JSON array per domain, so a fan-out
    costs a row per domain to read, not one per member, and no statement
    sorts or numbers every recipient (which made a 2,000-member post cost
    7.5 ms of the store's writer; this is 3)."""
    for domain, found in db.execute(
            f"SELECT domain, json_group_array(address) FROM ({select}) GROUP BY domain "
            "ORDER BY domain",
            params):
        addresses = sorted(set(json.loads(found)))
        for start in range(0, len(addresses), batch):
            part = addresses[start:start + batch]
            listed = json.dumps(part, separators=(",", ":")) if len(part) > 1 else None
            yield (*head, part[0], domain, *tail, listed, len(part))


def batch_size(site) -> int:
    """Recipients per queue row for a site's bulk sends (not personal copies):
    its `[delivery] batch_size`, or 1 with VERP (an envelope per recipient)."""
    delivery = site.settings.delivery
    return 1 if delivery.verp else delivery.batch_size


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
    for status, number in db.execute("SELECT status, sum(size) FROM deliveries GROUP BY status"):
        counts[status] = number
    oldest = db.execute("SELECT min(created_at) FROM deliveries "
                        "WHERE status IN ('queued', 'deferred', 'sending')").fetchone()[0]
    failed = list(db.query(
        "SELECT id, ref, recipient, recipients, size, status, attempts, last_error "
        "FROM deliveries WHERE status IN ('failed', 'bounced') ORDER BY id DESC LIMIT 20"))
    for row in failed:  # every recipient of a batch row, not only its first
        row["recipients"] = json.loads(row["recipients"]) if row["recipients"] else \
            [row["recipient"]]
    deferred = list(db.query(
        "SELECT id, ref, recipient, size, attempts, next_at, last_error FROM deliveries "
        "WHERE status = 'deferred' ORDER BY next_at LIMIT 20"))
    return {"counts": counts,
            "oldest_waiting_seconds": round(now - oldest, 1) if oldest else None,
            "failed": failed, "deferred": deferred}
