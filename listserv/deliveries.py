"""The outbound queue's rows on their way: claimed, settled, recovered, reported.

The delivery engine (`delivery.py`) runs these on the store's single
writer. `claim` marks due rows 'sending' in one write and groups them per
body, destination and recipient domain (`Router` says where a domain's mail
goes); `settle` writes what came of a group in bulk UPDATEs: 'sent',
'deferred' along the retry schedule, 'failed' past `give_up_after`,
'bounced' with a `bounces` row. `recover` requeues what a dead process left
'sending'; `queue_report` is what `listserv queue` shows. Writes
`deliveries` (and through `bounces.py`, `bounces` and `members.bounces`);
reads `bodies` and `forums`. Sends nothing.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from listserv.bounces import record_bounce
from listserv.queue import summary
from listserv.smtpout import MAILDIR

log = logging.getLogger(__name__)

INTERNAL_TRIES = 3  # a message failing for reasons of its own is set aside after this
IDS = "(SELECT value FROM json_each(?))"


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
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[domain] = found
        return found


@dataclass
class Body:
    raw: bytes | None
    personal: bool
    forum_id: int | None
    slug: str | None


@dataclass
class Group:
    """Rows to hand over in one transaction."""

    body_id: int
    destination: str
    sender: str
    ids: list[int] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)


def _ids(ids) -> str:
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
            f"ON f.id = b.forum_id WHERE b.id IN {IDS}", [_ids(body_ids)]):
        bodies[body_id] = Body(None, bool(personal), forum_id, slug)
    for body_id, raw in db.execute(f"SELECT id, raw FROM bodies WHERE id IN {IDS}",
                                   [_ids(i for i in bodies if i not in known)]):
        bodies[body_id].raw = _as_bytes(raw)
    return bodies


def claim(db, router: Router, now: float, *, rows: int, batch_size: int, verp: bool = False,
          limits: dict[str, int] | None = None, known=frozenset()):
    """Mark up to `rows` due rows 'sending', in groups; returns (groups, bodies).

    `limits` caps the rows per destination; destinations at 0 are skipped in
    the query itself, so their rows never crowd out the others'. SQLite hands
    the due rows back already gathered per body, sender and recipient domain
    (ids and recipients as JSON arrays), so the Python here runs once per
    gathering, not once per recipient: a claim takes hundreds of rows."""
    due = ("SELECT id, body_id, recipient, domain, sender FROM deliveries "
           "WHERE status IN ('queued', 'deferred') AND next_at <= ?")
    params: list = [now]
    limits = limits or {}
    excluded = [dest for dest, left in limits.items() if left <= 0]
    if excluded:
        db.conn.create_function("listserv_destination", 1, router, deterministic=True)
        due += f" AND listserv_destination(domain) NOT IN ({', '.join('?' * len(excluded))})"
        params += excluded
    found = db.execute(
        "SELECT body_id, sender, domain, json_group_array(id), json_group_array(recipient) "
        f"FROM ({due} LIMIT ?) GROUP BY body_id, sender, domain ORDER BY min(id)",
        params + [rows]).fetchall()
    if not found:
        return [], {}
    bodies = load_bodies(db, {row[0] for row in found}, known)
    chosen: list[Group] = []
    open_groups: dict[tuple, Group] = {}
    taken: Counter = Counter()
    for body_id, sender, domain, ids, recipients in found:
        destination = router(domain)
        left = limits.get(destination, rows) - taken[destination]
        if left <= 0:
            continue
        ids, recipients = json.loads(ids)[:left], json.loads(recipients)[:left]
        taken[destination] += len(ids)
        body = bodies.get(body_id)
        if verp or (body is not None and body.personal):  # one recipient per transaction
            for row_id, recipient in zip(ids, recipients):
                chosen.append(Group(body_id, destination, sender, [row_id], [recipient]))
            continue
        key = (body_id, sender, destination, "" if destination == MAILDIR else domain)
        group = open_groups.get(key)
        start = 0
        while start < len(ids):
            if group is None or len(group.ids) >= batch_size:
                group = open_groups[key] = Group(body_id, destination, sender)
                chosen.append(group)
            stop = start + batch_size - len(group.ids)
            group.ids += ids[start:stop]
            group.recipients += recipients[start:stop]
            start = stop
    db.execute(f"UPDATE deliveries SET status = 'sending' WHERE id IN {IDS}",
               [_ids(i for group in chosen for i in group.ids)])
    return chosen, bodies


def recover(db) -> int:
    """At start: rows a dead process left 'sending' are queued again."""
    count = db.execute("UPDATE deliveries SET status = 'queued' "
                       "WHERE status = 'sending'").rowcount
    if count:
        log.warning("%d deliveries were in flight when the server stopped; queued again", count)
    return count


def release(db, ids) -> int:
    """Rows claimed but not handed over go back to the queue."""
    return db.execute(f"UPDATE deliveries SET status = 'queued' WHERE status = 'sending' "
                      f"AND id IN {IDS}", [_ids(ids)]).rowcount


@dataclass
class Outcome:
    """What became of one group: filled by the engine, written by `settle`."""

    forum_id: int | None = None
    sent: list[int] = field(default_factory=list)
    deferred: dict[str, list[int]] = field(default_factory=dict)  # error -> ids
    bounced: list[tuple[int, str, int, str]] = field(default_factory=list)
    failed: dict[str, list[int]] = field(default_factory=dict)  # reason -> ids
    internal: bool = False  # deferred for a reason of the message's own
    postponed: tuple[list[int], float, str] | None = None  # ids, until, why (no try counted)
    down: tuple[str, float, str] | None = None  # destination, until, why

    def size(self) -> int:
        """How many rows this outcome settles."""
        return (len(self.sent) + sum(map(len, self.deferred.values())) + len(self.bounced)
                + sum(map(len, self.failed.values()))
                + (len(self.postponed[0]) if self.postponed else 0))

    def defer(self, ids, error: str) -> None:
        self.deferred.setdefault(error, []).extend(ids)

    def fail(self, ids, reason: str) -> None:
        self.failed.setdefault(reason, []).extend(ids)


@dataclass(frozen=True)
class Policy:
    retry: tuple[int, ...]
    give_up: int
    router: Router

    @property
    def retry_sql(self) -> str:
        steps = [max(1, int(s)) for s in self.retry]  # never due again at once
        cases = " ".join(f"WHEN {n} THEN {s}" for n, s in enumerate(steps[:-1]))
        return f"(CASE attempts {cases} ELSE {steps[-1]} END)" if cases else str(steps[-1])

    def gave_up(self, error: str) -> str:
        return f"gave up after {_duration(self.give_up)}: {error}"[:300]


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def settle(db, outcome: Outcome, now: float, policy: Policy) -> Counter:
    """Write what became of a group, in bulk; returns counts per final status."""
    counts: Counter = Counter()
    if outcome.sent:
        counts["sent"] += db.execute(
            f"UPDATE deliveries SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
            f"last_error = '' WHERE id IN {IDS}", [now, _ids(outcome.sent)]).rowcount
    late = now - policy.give_up
    tries = INTERNAL_TRIES if outcome.internal else 1 << 30  # its own fault: a few tries
    for error, ids in outcome.deferred.items():
        db.execute(
            "UPDATE deliveries SET attempts = attempts + 1, status = CASE "
            "WHEN created_at <= ? OR attempts + 1 >= ? THEN 'failed' ELSE 'deferred' END, "
            "last_error = CASE WHEN created_at <= ? THEN ? WHEN attempts + 1 >= ? THEN ? "
            f"ELSE ? END, next_at = ? + {policy.retry_sql} WHERE id IN {IDS}",
            [late, tries, late, policy.gave_up(error), tries,
             f"set aside after {tries} tries: {error}"[:300], error[:300], now, _ids(ids)])
        _count_settled(db, ids, counts)
    if outcome.postponed:
        ids, until, why = outcome.postponed
        _postpone(db, f"id IN {IDS}", [_ids(ids)], late, until, why, policy)
        _count_settled(db, ids, counts)
    if outcome.down:
        destination, until, why = outcome.down
        where, params = "status IN ('queued', 'deferred') AND next_at <= ?", [now]
        if len(policy.router.destinations) > 1:
            db.conn.create_function("listserv_destination", 1, policy.router,
                                    deterministic=True)
            where += " AND listserv_destination(domain) = ?"
            params.append(destination)
        _postpone(db, where, params, late, until, why, policy)
    for reason, ids in outcome.failed.items():
        counts["failed"] += db.execute(
            f"UPDATE deliveries SET status = 'failed', attempts = attempts + 1, "
            f"last_error = ? WHERE id IN {IDS}", [reason[:300], _ids(ids)]).rowcount
    for delivery_id, recipient, code, detail in outcome.bounced:
        db.execute("UPDATE deliveries SET status = 'bounced', attempts = attempts + 1, "
                   "last_error = ? WHERE id = ?", [detail[:300], delivery_id])
        record_bounce(db, delivery_id, recipient, code, detail, now, forum_id=outcome.forum_id)
        counts["bounced"] += 1
    return counts


def settle_all(db, outcomes: list[Outcome], now: float, policy: Policy) -> Counter:
    """Settle several outcomes in one write; the sent rows of all of them in one
    UPDATE. An outcome whose writing fails (a bounce that cannot be recorded,
    say) is logged and left 'sending' for the next start; the others stand."""
    counts: Counter = Counter()
    sent = [row for outcome in outcomes for row in outcome.sent]
    if sent:
        counts["sent"] += db.execute(
            f"UPDATE deliveries SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
            f"last_error = '' WHERE id IN {IDS}", [now, _ids(sent)]).rowcount
    for outcome in outcomes:
        if outcome.size() == len(outcome.sent) and not outcome.down:
            continue
        rest = replace(outcome, sent=[])
        db.execute("SAVEPOINT outcome")
        try:
            counts.update(settle(db, rest, now, policy))
        except Exception:
            db.execute("ROLLBACK TO SAVEPOINT outcome")
            log.exception("could not record the outcome of %d deliveries", rest.size())
        db.execute("RELEASE SAVEPOINT outcome")
    return counts


def _postpone(db, where: str, params: list, late: float, until: float, why: str,
              policy: Policy) -> None:
    """Rows wait for their destination without a try counted (or fail when too old)."""
    db.execute(
        "UPDATE deliveries SET status = CASE WHEN created_at <= ? THEN 'failed' "
        "ELSE 'deferred' END, last_error = CASE WHEN created_at <= ? THEN ? ELSE ? END, "
        f"next_at = ? WHERE {where}",
        [late, late, policy.gave_up(why), why[:300], until] + params)


def _count_settled(db, ids, counts: Counter) -> None:
    for status, number in db.execute(f"SELECT status, count(*) FROM deliveries "
                                     f"WHERE id IN {IDS} GROUP BY status", [_ids(ids)]):
        counts[status] += number


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
            "SELECT domain, status, count(*) FROM deliveries WHERE status IN "
            "('queued', 'sending', 'deferred', 'failed', 'bounced') GROUP BY domain, status"):
        domains.setdefault(domain, {"domain": domain})[status] = number
    report["domains"] = sorted(domains.values(), key=lambda d: (
        -(d.get("queued", 0) + d.get("sending", 0) + d.get("deferred", 0)), d["domain"]))[:50]
    report["bounces"] = list(db.query(
        "SELECT at, recipient, code, detail FROM bounces ORDER BY id DESC LIMIT 20"))
    return report
