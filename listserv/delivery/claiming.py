"""The engine's claim step: due rows taken from the queue and started.

`Claiming` is the part of the delivery `Engine` (`engine.py`, where its
state is made) that decides how much to claim, per destination and in all
(enough for every connection's next `AHEAD` transactions), claims it in one
write (`rows.claim`, on the store's writer, before the pipeline's work),
keeps the claimed bodies in a bounded cache, and starts ready groups within
each destination's limits and the crash window. Reads `deliveries` and
`bodies` through `rows.py`; writes only the claim ('sending'). Will not
send, nor write what came of a transaction (`attempts.py`, `settling.py`).
"""

from __future__ import annotations

import asyncio
import logging

from listserv.delivery.rows import Body, Group, claim, load_bodies
from listserv.delivery.smtpout import MAILDIR

log = logging.getLogger(__name__)

BODY_CACHE_BYTES = 8 * 1024 * 1024  # bodies kept in memory; a soak levels off under it
AHEAD = 4  # transactions per connection claimed ahead (running and queued included)


class Claiming:
    """Claims and starts groups for the `Engine`, on the engine's own state."""

    # -- capacity --------------------------------------------------------------
    def cap(self, destination: str) -> int:
        """Transactions at once for a destination: one until it has answered, and
        never all workers when there are other destinations to serve."""
        if destination not in self.reached:
            return 1
        if len(self.router.destinations) > 1 and destination != MAILDIR:
            return max(1, self.concurrency - 1)
        return self.concurrency

    def room(self) -> int:
        """Rows to claim now: enough for every connection's next AHEAD transactions."""
        return AHEAD * self.concurrency * self.batch_size - self.pending

    def should_claim(self) -> bool:
        """Claim when something may be due and either nothing is ready or there
        is room for a transaction per connection: claims (each a commit) come
        a connection-full at a time, not one group at a time."""
        room = self.room()
        return self.again and room > 0 and (
            not self.ready or room >= self.concurrency * self.batch_size)

    def _claimed(self, task: asyncio.Task) -> None:
        self.claiming = None
        if not task.cancelled() and task.exception() is not None:
            self.claim_error = task.exception()
            log.error("claiming deliveries failed (%s: %s); trying again shortly",
                      type(self.claim_error).__name__, self.claim_error)
        self.changed.set()

    async def claim(self) -> None:
        room = self.room()
        limits = {dest: AHEAD * self.cap(dest) * self.batch_size - self.claimed[dest]
                  for dest in self.router.destinations}
        if all(left <= 0 for left in limits.values()):
            return  # every destination is busy; a finished transaction wakes us
        # Claims go before the pipeline's work (a post's fan-out is a long write):
        # idle connections cost more than a post handled a moment later.
        groups, bodies = await self.write(
            claim, self.router, self.clock(), priority=0, rows=room, batch_size=self.batch_size,
            verp=self.verp, limits=limits, known=frozenset(self.bodies))
        for body_id, body in bodies.items():
            if body_id in self.bodies:
                if self.bodies[body_id].personal != body.personal:
                    self.bodies[body_id].ready = None  # signed for the other kind of copy
                self.bodies[body_id].personal = body.personal
            else:
                self._cache(body_id, body)
        taken = 0
        for group in groups:
            self.ready.append(group)
            self.claimed[group.destination] += len(group.recipients)
            taken += len(group.recipients)
        self.pending += taken
        if taken >= room:
            self.again = True  # there may be more right away

    def start_ready(self) -> None:
        """Start ready groups within the limits. A handover process takes `ahead`
        more per connection, to start each as soon as a connection is free."""
        waiting: list[Group] = []  # their destination is busy; they keep their place
        ahead = 1 + self.handover.ahead
        # Handed over but not yet recorded, running or done: the crash window.
        while self.ready and len(self.running) + self.unrecorded < self.concurrency * ahead:
            group = self.ready.popleft()
            limit = self.cap(group.destination)
            if group.destination != MAILDIR:
                limit *= ahead
            # The crash window: handed over with the others unrecorded, these
            # recipients could not pass it (alone, a group always may go).
            fits = self.exposed == 0 or self.exposed + len(group.recipients) <= self.window
            if fits and self.inflight[group.destination] < limit:
                task = asyncio.create_task(self.deliver(group))
                self.running[task] = group
                self.exposed += len(group.recipients)
                self.inflight[group.destination] += 1
                task.add_done_callback(self._finished)
            else:
                waiting.append(group)
        self.ready.extendleft(reversed(waiting))

    def _finished(self, task: asyncio.Task) -> None:
        group = self.running.pop(task)
        self.inflight[group.destination] -= 1
        self.claimed[group.destination] -= len(group.recipients)
        self.pending -= len(group.recipients)
        self.again = True
        self.changed.set()

    async def _body(self, body_id: int) -> Body | None:
        body = self.bodies.get(body_id)
        if body is None or body.raw is None:
            loaded = await self.write(load_bodies, [body_id])
            body = loaded.get(body_id)
            if body is not None:
                self._cache(body_id, body)
        else:
            self.bodies.move_to_end(body_id)
        return body

    def _cache(self, body_id: int, body: Body) -> None:
        if body.raw is None:
            return
        self.bodies[body_id] = body
        self.body_bytes += len(body.raw)
        while self.body_bytes > BODY_CACHE_BYTES and len(self.bodies) > 1:
            _, old = self.bodies.popitem(last=False)
            self.body_bytes -= len(old.raw or b"")
