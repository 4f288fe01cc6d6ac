"""The engine's settle step: what came of a transaction, written down.

`by_row` turns how each recipient of a group ended into an `Outcome` per
queue row (a batch row's recipients that ended alike stay on it; the others
are split off), and `Settling`, the part of the delivery `Engine`
(`engine.py`) that records it, writes each outcome the moment it is known
(`outcomes.settle_all`, on the store's writer), retrying while the store
refuses it; until then its rows stay 'sending' and in the crash window.
Writes `deliveries` (and `bounces`) through `outcomes.py`. Will not send or
claim.
"""

from __future__ import annotations

import asyncio
import logging
import time

from listserv.delivery.outcomes import Outcome, settle_all
from listserv.delivery.rows import Group

log = logging.getLogger(__name__)


class Settling:
    """Records outcomes for the `Engine`, on the engine's own state."""

    async def _record(self, outcome: Outcome, recipients: int) -> None:
        """Write one outcome; while the store cannot take it (a full disk), try
        again every few seconds: the rows stay 'sending', so nobody gets them
        twice, and they stay in the crash window."""
        wait = 1.0
        try:
            while True:
                try:
                    self.counts.update(await self.write(settle_all, [outcome], self.clock(),
                                                        self.policy, priority=0))
                except Exception as error:
                    if self.stopping:
                        log.error("could not record the outcome of %d deliveries (%s); "
                                  "they are queued again at the next start",
                                  outcome.size(), error)
                        return
                    now = time.monotonic()
                    if not self.record_failing or now - self.record_told >= 60:
                        log.error("could not record the outcome of %d deliveries (%s); "
                                  "trying again in %.0f s", outcome.size(), error, wait)
                        self.record_told = now
                    self.record_failing = True
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, 30.0)
                    continue
                if self.record_failing:
                    self.record_failing = False
                    log.warning("outcomes of deliveries are recorded again")
                return
        finally:
            self.unrecorded -= 1
            self.exposed -= recipients
            self.again = True  # deferred rows may be due again, a destination back
            self.changed.set()


def by_row(group: Group, ended: dict[str, tuple], outcome: Outcome) -> Outcome:
    """Fill `outcome` from how each recipient's delivery ended (`ended`; the
    others were sent). A row's recipients that ended alike stay on the row (the
    sent ones, when there are any); each of the others is named with its row,
    to be split off into a row of its own. A bounce is always a row's own."""
    if not ended:  # the common case: every row sent whole
        outcome.sent += group.ids
        outcome.recipients += len(group.recipients)
        return outcome
    rows: dict[int, list[str]] = {}
    for row_id, recipient in zip(group.owners, group.recipients):
        rows.setdefault(row_id, []).append(recipient)
    for row_id, recipients in rows.items():
        alike: dict[tuple, list[str]] = {}
        for recipient in recipients:
            alike.setdefault(ended.get(recipient, ("sent",)), []).append(recipient)
        if ("sent",) in alike:
            keep = ("sent",)
        else:
            kinds = [kind for kind in alike if kind[0] != "bounce"]
            keep = max(kinds, key=lambda kind: len(alike[kind])) if kinds else None
        if keep is None:  # every recipient bounced: the row stays with its first
            keep = ended[recipients[0]]
        for kind, members in alike.items():
            if kind == keep and kind[0] != "bounce":
                entries = [(row_id, None)]  # they stay on the row
            elif kind == keep:  # a bounce is recorded against a row of one
                entries = [(row_id, members[0])] + [((row_id, r), r) for r in members[1:]]
            else:
                entries = [((row_id, r), r) for r in members]
            if kind[0] == "sent":
                outcome.sent.append(row_id)
                outcome.recipients += len(members)
            elif kind[0] == "defer":
                outcome.defer([target for target, _ in entries], kind[1])
            elif kind[0] == "fail":
                outcome.fail([target for target, _ in entries], kind[1])
            else:
                outcome.bounced += [(target, r, kind[1], kind[2]) for target, r in entries]
    return outcome
