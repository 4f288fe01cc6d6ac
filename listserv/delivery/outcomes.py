"""What came of a transaction, written to the outbound queue's rows.

The delivery engine fills an `Outcome` per group (`settling.by_row`) and
runs `settle_all` on the store's single writer. `settle` writes it in bulk
UPDATEs: 'sent', 'deferred' along the retry schedule (`Policy`), 'failed'
past `give_up_after`, 'bounced' with a `bounces` row; a recipient whose
delivery ended differently from the rest of its batch is first given a row
of its own. Writes `deliveries` (and through `bounces.py`, `bounces` and
`members.bounces`). Will not claim rows (`rows.py`) or send anything.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace

from listserv.delivery.bounces import record_bounce
from listserv.delivery.queue import split_off
from listserv.delivery.rows import IDS, Router, id_array
from listserv.site.faults import log_failure

log = logging.getLogger(__name__)

INTERNAL_TRIES = 3  # a message failing for reasons of its own is set aside after this


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
            f"last_error = '' WHERE id IN {IDS}", [now, id_array(outcome.sent)])
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
             f"set aside after {tries} tries: {error}"[:300], error[:300], now, id_array(ids)])
        _count_settled(db, ids, counts)
    if outcome.postponed:
        ids, until, why = outcome.postponed
        _postpone(db, f"id IN {IDS}", [id_array(ids)], late, until, why, policy)
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
                   f"last_error = ? WHERE id IN {IDS}", [reason[:300], id_array(ids)])
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
            f"last_error = '' WHERE id IN {IDS}", [now, id_array(sent)])
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
                                     f"WHERE id IN {IDS} GROUP BY status", [id_array(ids)]):
        counts[status] += number
