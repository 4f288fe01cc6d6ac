"""The wall clock's steps, seen against the monotonic clock, and the waits they would break.

Due times are stored as wall-clock seconds (`deliveries.next_at`,
`messages.retry_at`, `posts.retry_at`), since they must outlive the
process; the waits between looks run on the monotonic clock (asyncio's).
When the wall clock is stepped (NTP after a boot, an operator's `date`, a
virtual machine resumed), a stored due time would then be an hour late
after a step back (a stall: nothing retried for an hour) or all due at once
after a step forward (a burst). `Steps` notices a step: the wall clock
moved away from where the monotonic clock says it should be by more than
`STEP` seconds (NTP's slewing never does that). `shift_waits(db, seconds)`
moves every stored time still waiting by the step, so each wait keeps the
length it was given (and `give_up_after` counts real time). Reads and
writes those columns only; the delivery engine calls both.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

STEP = 2.0  # seconds the wall clock may drift from the monotonic one before it is a step


class Steps:
    """How far the wall clock has jumped since it was last asked."""

    def __init__(self, wall=time.time, monotonic=time.monotonic):
        self.wall, self.monotonic = wall, monotonic
        self.offset = wall() - monotonic()

    def step(self) -> float:
        """Seconds the wall clock was stepped (forward > 0, back < 0) since the
        last call; 0.0 when it kept time."""
        drift = self.wall() - (self.monotonic() + self.offset)
        if abs(drift) < STEP:
            return 0.0
        self.offset += drift
        return drift


def shift_waits(db, seconds: float) -> int:
    """Move the stored times of everything still waiting by `seconds`; returns
    how many delivery rows moved."""
    moved = db.execute(
        "UPDATE deliveries SET next_at = next_at + ?, created_at = created_at + ? "
        "WHERE status IN ('queued', 'deferred', 'sending')", [seconds, seconds]).rowcount
    db.execute("UPDATE messages SET retry_at = retry_at + ? WHERE status = 'received' "
               "AND retry_at > 0", [seconds])
    db.execute("UPDATE posts SET retry_at = retry_at + ? WHERE status = 'approved' "
               "AND retry_at > 0", [seconds])
    return moved
