"""The outbound queue's rows on their way out: claimed, recovered, reported.

The delivery engine (`engine.py`) runs these on the store's single
writer. `claim` marks due rows 'sending' in one write and groups them per
body, destination and recipient domain (`Router` says where a domain's mail
goes); a row may be a batch of recipients (see `queue.py`) and is never
spread over two transactions. `recover` requeues what a dead process left
'sending'; `queue_report` is what `listserv queue` shows. Writes the
status of `deliveries`; reads `bodies` and `forums`. What came of a
transaction is written by `outcomes.py`. Sends nothing.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import accumulate

from listserv.delivery.queue import split_off, summary
from listserv.delivery.smtpout import MAILDIR

log = logging.getLogger(__name__)

IDS = "(SELECT value FROM json_each(?))"
DOMAINS_KEPT = 4096  # recipient domains whose destination the router remembers


class Router:
    """Where mail for a recipient domain goes: a "host:port", or MAILDIR."""

    def __init__(self, delivery):
        routes = {key.lower(): value for key, value in delivery.routes.items()}
        self.exact = {k: v for k, v in routes.items() if k != "*" and not k.startswith(".")}
        self.suffixes = sorted(((k, v) for k, v in routes.items() if k.startswith(".")),
                               key=lambda item: -len(item[0]))
        self.fallback = routes.get("*") or delivery.smarthost or MAILDIR
        self.destinations = frozenset(routes.values()) | {self.fallback}
        self._cache: dict[str, str] = {}

    def __call__(self, domain: str) -> str:
        found = self._cache.get(domain)
        if found is None:
            found = self.exact.get(domain)
            for suffix, target in self.suffixes if found is None else ():
                if domain.endswith(suffix) or domain == suffix[1:]:
                    found = target
                    break
            found = found or self.fallback
            if len(self._cache) >= DOMAINS_KEPT:  # bounded: a long-running server
                self._cache.clear()                # meets domains without end
            self._cache[domain] = found
        return found


@dataclass
class Body:
    raw: bytes | None
    personal: bool
    forum_id: int | None
    slug: str | None
    ready: bytes | None = None  # as it goes out (delivery.py: CRLF, signed once if shared)


@dataclass
class Group:
    """Rows to hand over in one transaction: `ids` the rows, `recipients` all
    their recipients, `owners` the row of each recipient (a row may be a batch
    of several; a row is never spread over two groups)."""

    body_id: int
    destination: str
    sender: str
    ids: list[int] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)

    def add(self, row_id: int, recipients: list[str]) -> None:
        self.ids.append(row_id)
        self.recipients += recipients
        self.owners += [row_id] * len(recipients)


def id_array(ids) -> str:
    return json.dumps(list(ids))


def _as_bytes(raw) -> bytes | None:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, memoryview):
        return raw.tobytes()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return None


def load_bodies(db, body_ids, known=frozenset()) -> dict[int, Body]:
    """Bodies by id; the bytes of those in `known` are not read again."""
    bodies = {}
    for body_id, personal, forum_id, slug in db.execute(
            "SELECT b.id, b.personal, b.forum_id, f.slug FROM bodies b LEFT JOIN forums f "
            f"ON f.id = b.forum_id WHERE b.id IN {IDS}", [id_array(body_ids)]):
        bodies[body_id] = Body(None, bool(personal), forum_id, slug)
    for body_id, raw in db.execute(f"SELECT id, raw FROM bodies WHERE id IN {IDS}",
                                   [id_array(i for i in bodies if i not in known)]):
        bodies[body_id].raw = _as_bytes(raw)
    return bodies


def claim(db, router: Router, now: float, *, rows: int, batch_size: int, verp: bool = False,
          limits: dict[str, int] | None = None, known=frozenset()):
    """Mark due rows for up to about `rows` recipients 'sending', in groups;
    returns (groups, bodies).

    `limits` caps the recipients per destination; destinations at 0 are
    skipped in the query itself, so their rows never crowd out the others'.
    SQLite hands the due rows back already gathered per body, sender and
    recipient domain (ids, sizes and recipients as JSON arrays), so the
    Python here runs per gathering and per batch row, not per recipient."""
    due = "SELECT id, size FROM deliveries WHERE status IN ('queued', 'deferred') AND next_at <= ?"
    params: list = [now]
    limits = limits or {}
    excluded = [dest for dest, left in limits.items() if left <= 0]
    if excluded:
        db.conn.create_function("listserv_destination", 1, router, deterministic=True)
        due += f" AND listserv_destination(domain) NOT IN ({', '.join('?' * len(excluded))})"
        params += excluded
    # Due rows in the due index's order, until they add up to `rows` recipients
    # (a batch row counts its size): only as many are read as are taken.
    cursor = db.conn.execute(due, params)
    taken_ids: list[int] = []
    total = 0
    while total < rows and (some := cursor.fetchmany(256)):
        for row_id, size in some:
            taken_ids.append(row_id)
            total += size
            if total >= rows:
                break
    cursor.close()
    if not taken_ids:
        return [], {}
    found = db.execute(
        "SELECT body_id, sender, domain, json_group_array(id), json_group_array(size), "
        "json_group_array(json(coalesce(recipients, json_array(recipient)))) "
        f"FROM deliveries WHERE id IN {IDS} GROUP BY body_id, sender, domain ORDER BY min(id)",
        [id_array(taken_ids)]).fetchall()
    bodies = load_bodies(db, {row[0] for row in found}, known)
    chosen: list[Group] = []
    open_groups: dict[tuple, Group] = {}
    taken: Counter = Counter()
    for body_id, sender, domain, ids, sizes, batches in found:
        destination = router(domain)
        left = limits.get(destination, rows) - taken[destination]
        if left <= 0:
            continue
        sizes = json.loads(sizes)
        cut = bisect_right(list(accumulate(sizes)), left)
        if cut == 0 and not taken[destination]:
            cut = 1  # a batch larger than the room left still goes, alone
        ids, batches = json.loads(ids)[:cut], json.loads(batches)[:cut]
        taken[destination] += sum(sizes[:cut])
        body = bodies.get(body_id)
        if verp or (body is not None and body.personal):  # one recipient per transaction
            for row_id, batch in zip(ids, batches):
                for recipient in batch[1:]:  # queued as a batch before VERP was set
                    alone = split_off(db, row_id, recipient)
                    chosen.append(Group(body_id, destination, sender, [alone], [recipient],
                                        [alone]))
                chosen.append(Group(body_id, destination, sender, [row_id], batch[:1],
                                    [row_id]))
            continue
        key = (body_id, sender, destination, "" if destination == MAILDIR else domain)
        group = open_groups.get(key)
        for row_id, batch in zip(ids, batches):
            if group is None or (group.recipients
                                 and len(group.recipients) + len(batch) > batch_size):
                group = open_groups[key] = Group(body_id, destination, sender)
                chosen.append(group)
            group.add(row_id, batch)
    db.execute(f"UPDATE deliveries SET status = 'sending' WHERE id IN {IDS}",
               [id_array(i for group in chosen for i in group.ids)])
    return chosen, bodies


def recover(db) -> int:
    """At start: rows a dead process left 'sending' are queued again; returns
    how many recipients they are for."""
    recipients, rows = db.execute("SELECT coalesce(sum(size), 0), count(*) FROM deliveries "
                                  "WHERE status = 'sending'").fetchone()
    if rows:
        db.execute("UPDATE deliveries SET status = 'queued' WHERE status = 'sending'")
        log.warning("%d deliveries (%d queue rows) were in flight when the server stopped; "
                    "queued again", recipients, rows)
    return recipients


def release(db, ids) -> int:
    """Rows claimed but not handed over go back to the queue."""
    return db.execute(f"UPDATE deliveries SET status = 'queued' WHERE status = 'sending' "
                      f"AND id IN {IDS}", [id_array(ids)]).rowcount


def queue_report(db, now) -> dict:
    """What `listserv queue` shows: counts per status and per recipient domain,
    deferred rows with their next try and last error, failures and bounces."""
    stamp = now.timestamp() if isinstance(now, datetime) else float(now)
    report = summary(db, stamp)
    counts = report["counts"]
    report["pending"] = counts.get("queued", 0) + counts.get("sending", 0)
    for row in report["deferred"]:
        row["next_try"] = datetime.fromtimestamp(row["next_at"], timezone.utc).isoformat()
    domains: dict[str, dict] = {}
    for domain, status, number in db.execute(
            "SELECT domain, status, sum(size) FROM deliveries WHERE status IN "
            "('queued', 'sending', 'deferred', 'failed', 'bounced') GROUP BY domain, status"):
        domains.setdefault(domain, {"domain": domain})[status] = number
    report["domains"] = sorted(domains.values(), key=lambda d: (
        -(d.get("queued", 0) + d.get("sending", 0) + d.get("deferred", 0)), d["domain"]))[:50]
    report["bounces"] = list(db.query(
        "SELECT at, recipient, code, detail FROM bounces ORDER BY id DESC LIMIT 20"))
    return report
