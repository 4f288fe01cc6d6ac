"""The outbound queue's rows on their way: claimed, settled, recovered, reported.

The delivery engine (`engine.py`) runs these on the store's single
writer. `claim` marks due rows 'sending' in one write and groups them per
body, destination and recipient domain (`Router` says where a domain's mail
goes); a row may be a batch of recipients (see `queue.py`) and is never
spread over two transactions. `settle` writes what came of a group in bulk
UPDATEs: 'sent', 'deferred' along the retry schedule, 'failed' past
`give_up_after`, 'bounced' with a `bounces` row; a recipient whose delivery
ended differently from the rest of its batch is first given a row of its
own. `recover` requeues what a dead process left
'sending'; `queue_report` is what `listserv queue` shows. Writes
`deliveries` (and through `bounces.py`, `bounces` and `members.bounces`);
reads `bodies` and `forums`. Sends nothing.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from itertools import accumulate

from listserv.delivery.bounces import record_bounce
from listserv.delivery.queue import split_off, summary
from listserv.delivery.smtpout import MAILDIR
from listserv.site.faults import log_failure

log = logging.getLogger(__name__)

INTERNAL_TRIES = 3  # a message failing for reasons of its own is set aside after this
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
        [_ids(taken_ids)]).fetchall()
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
               [_ids(i for group in chosen for i in group.ids)])
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
                      f"AND id IN {IDS}", [_ids(ids)]).rowcount


Target = int | tuple[int, str]  # a row, or one recipient of a batch row, to be split off


@dataclass
class Outcome:
    """What became of one group: filled by the engine, written by `settle`.

    Each entry names a row, or a (row, recipient) pair: a recipient of a batch
    whose delivery ended differently from the rest, which `settle` first gives
    a row of its own. `sent` names whole rows; `recipients` counts who they
    are for."""

    forum_id: int | None = None
    sent: list[int] = field(default_factory=list)
    recipients: int = 0  # of the rows in `sent`
    deferred: dict[str, list[Target]] = field(default_factory=dict)  # error -> targets
    bounced: list[tuple[Target, str, int, str]] = field(default_factory=list)
    failed: dict[str, list[Target]] = field(default_factory=dict)  # reason -> targets
    internal: bool = False  # deferred for a reason of the message's own
    postponed: tuple[list[int], float, str] | None = None  # ids, until, why (no try counted)
    down: tuple[str, float, str] | None = None  # destination, until, why

    def size(self) -> int:
        """How many rows and split-off recipients this outcome settles."""
        return (len(self.sent) + sum(map(len, self.deferred.values())) + len(self.bounced)
                + sum(map(len, self.failed.values()))
                + (len(self.postponed[0]) if self.postponed else 0))

    def splits(self) -> bool:
        """Whether some batch row's recipients part ways here."""
        return any(isinstance(target, tuple) for targets in
                   (*self.deferred.values(), *self.failed.values(),
                    [entry[0] for entry in self.bounced]) for target in targets)

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


def _own_rows(db, outcome: Outcome) -> Outcome:
    """The outcome with every (row, recipient) entry turned into a row of that
    recipient's own, split off its batch."""
    def row(target: Target) -> int:
        if isinstance(target, int):
            return target
        row_id, recipient = target
        alone = split_off(db, row_id, recipient)
        return row_id if alone is None else alone
    return replace(
        outcome,
        deferred={error: [row(t) for t in targets] for error, targets in outcome.deferred.items()},
        failed={reason: [row(t) for t in targets] for reason, targets in outcome.failed.items()},
        bounced=[(row(t), recipient, code, detail)
                 for t, recipient, code, detail in outcome.bounced])


def settle(db, outcome: Outcome, now: float, policy: Policy) -> Counter:
    """Write what became of a group, in bulk; returns counts per final status
    (in recipients)."""
    counts: Counter = Counter()
    if outcome.splits():
        outcome = _own_rows(db, outcome)
    if outcome.sent:
        db.execute(
            f"UPDATE deliveries SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
            f"last_error = '' WHERE id IN {IDS}", [now, _ids(outcome.sent)])
        counts["sent"] += outcome.recipients
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
        db.execute(f"UPDATE deliveries SET status = 'failed', attempts = attempts + 1, "
                   f"last_error = ? WHERE id IN {IDS}", [reason[:300], _ids(ids)])
        _count_settled(db, ids, counts)
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
    # An outcome that splits a batch is written whole in its savepoint below:
    # its sent rows must not stand if giving the others their rows fails.
    whole = [outcome for outcome in outcomes if outcome.splits()]
    simple = [outcome for outcome in outcomes if not outcome.splits()]
    sent = [row for outcome in simple for row in outcome.sent]
    if sent:
        db.execute(
            f"UPDATE deliveries SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
            f"last_error = '' WHERE id IN {IDS}", [now, _ids(sent)])
        counts["sent"] += sum(outcome.recipients for outcome in simple)
    for outcome in simple + whole:
        if outcome.size() == len(outcome.sent) and not outcome.down:
            continue
        rest = outcome if outcome.splits() else replace(outcome, sent=[], recipients=0)
        db.execute("SAVEPOINT outcome")
        try:
            counts.update(settle(db, rest, now, policy))
        except Exception as error:
            db.execute("ROLLBACK TO SAVEPOINT outcome")
            log_failure(log, error, "could not record the outcome of %d deliveries", rest.size())
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
    for status, number in db.execute(f"SELECT status, sum(size) FROM deliveries "
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
            "SELECT domain, status, sum(size) FROM deliveries WHERE status IN "
            "('queued', 'sending', 'deferred', 'failed', 'bounced') GROUP BY domain, status"):
        domains.setdefault(domain, {"domain": domain})[status] = number
    report["domains"] = sorted(domains.values(), key=lambda d: (
        -(d.get("queued", 0) + d.get("sending", 0) + d.get("deferred", 0)), d["domain"]))[:50]
    report["bounces"] = list(db.query(
        "SELECT at, recipient, code, detail FROM bounces ORDER BY id DESC LIMIT 20"))
    return report
