"""Publications: what the hub sends out on a schedule, and what relays carry.

One row of `publications` per What's New issue and per forum digest, written
in the same transaction that queues its copies, so a crash leaves either
the whole publication (and its deliveries) or nothing. `key` names it
('whatsnew:17', 'digest:peace:12'); every delivery of it has the ref
`delivery_ref(key, part)`, so queuing it again reaches no one twice.
Status: 'built' (stored), 'sending' (queued), 'sent' (no delivery of it is
waiting any more). Writes `publications`; reads `deliveries`.

`payload` is the structured publication as JSON (relays build on it):

    {"key": "whatsnew:17", "kind": "whatsnew", "number": 17, "volume": 1,
     "title": "What's New no. 17", "language": "en",
     "period": {"start": ISO, "end": ISO},
     "sections": [{"heading": "Regions and places", "subheading": "Sahel",
                   "path": "geocultural",
                   "items": [{"ref": "INIT-42", "title": "...", "text": "...",
                              "link": "https://..." or "", "language": "fr",
                              "region": "...", "path": "geocultural",
                              "forum": "sahel-network" or "", "when": "..."}]}],
     "text": "the plain-text rendering (in `language`)",
     "html": "the sanitised HTML rendering (in `language`)",
     "headings": {"fr": {"title": "Quoi de neuf", "geocultural": "...", ...}, ...}}

Items keep the language they were written in; `text` of an item is the
trimmed text printed in the bulletin (`get INIT-42` returns the whole);
`headings` gives the section headings and title word in every site language.
A digest (kind 'digest', key 'digest:SLUG:N') has the same shape with
`"forum": "peace"`, one section (heading: the forum's title, subheading "")
whose items are the posts, `{"ref": "POST-123", "title": subject,
"text": plain-text body, "author": name or address, "language": the forum's,
"date": ISO}`, and `html` empty.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from digests.slots import iso

log = logging.getLogger(__name__)

STATUSES = ("built", "sending", "sent")


def delivery_ref(key: str, part: int = 1) -> str:
    """The ref of a publication's deliveries: one per recipient for part 1,
    whatever the language or profile, so nobody gets two copies."""
    return key if part == 1 else f"{key}:part{part}"


def store_publication(db, *, key: str, kind: str, number: int, title: str, language: str,
                      payload: dict, now: datetime, forum_id: int | None = None,
                      volume: int = 1, period_start: str | None = None,
                      period_end: str | None = None) -> int:
    return db["publications"].insert({
        "key": key, "kind": kind, "forum_id": forum_id, "volume": volume, "number": number,
        "title": title[:300], "language": language, "period_start": period_start,
        "period_end": period_end, "payload": json.dumps(payload, ensure_ascii=False),
        "status": "built", "created_at": iso(now)}).last_pk


def mark_sending(db, key: str) -> None:
    db.execute("UPDATE publications SET status = 'sending' WHERE key = ? AND status = 'built'",
               [key])


def get(db, key: str, with_payload: bool = True) -> dict | None:
    rows = list(db.query("SELECT * FROM publications WHERE key = ?", [key]))
    if not rows:
        return None
    row = rows[0]
    if with_payload:
        row["payload"] = json.loads(row["payload"])
    else:
        del row["payload"]
    return row


def latest(db, kind: str, forum_id: int | None = None) -> dict | None:
    """The newest publication of a kind (of a forum, for digests), without payload."""
    sql = ("SELECT id, key, kind, forum_id, volume, number, title, language, period_start, "
           "period_end, status, created_at, sent_at FROM publications WHERE kind = ?")
    params: list = [kind]
    if forum_id is not None:
        sql += " AND forum_id = ?"
        params.append(forum_id)
    rows = list(db.query(sql + " ORDER BY number DESC LIMIT 1", params))
    return rows[0] if rows else None


def next_number(db, kind: str, forum_id: int | None = None) -> int:
    found = latest(db, kind, forum_id)
    return (found["number"] if found else 0) + 1


def list_publications(db, kind: str | None = None, limit: int = 50) -> list[dict]:
    sql = ("SELECT p.key, p.kind, f.slug AS forum, p.volume, p.number, p.title, p.language, "
           "p.period_start, p.period_end, p.status, p.created_at, p.sent_at, "
           "(SELECT coalesce(sum(d.size), 0) FROM deliveries d WHERE d.ref = p.key) "
           "AS recipients "
           "FROM publications p LEFT JOIN forums f ON f.id = p.forum_id")
    params: list = []
    if kind:
        sql += " WHERE p.kind = ?"
        params.append(kind)
    return list(db.query(sql + " ORDER BY p.id DESC LIMIT ?", params + [limit]))


def waiting_deliveries(db, key: str) -> int:
    """Deliveries of the publication not yet handed over (queued, deferred, sending)."""
    return db.execute(
        "SELECT count(*) FROM deliveries WHERE (ref = ? OR (ref > ? AND ref < ?)) "
        "AND status IN ('queued', 'deferred', 'sending')",
        [key, key + ":", key + ";"]).fetchone()[0]


def finish_sending(db, now: datetime) -> int:
    """Mark 'sent' each publication in 'sending' with nothing left to hand over."""
    done = 0
    for (key,) in db.execute("SELECT key FROM publications WHERE status = 'sending'").fetchall():
        if not waiting_deliveries(db, key):
            db.execute("UPDATE publications SET status = 'sent', sent_at = ? WHERE key = ?",
                       [iso(now), key])
            log.info("publication %s sent", key)
            done += 1
    return done
