"""The delivery engine: the outbound queue handed to mail servers.

`run_delivery` runs on the server's event loop: it claims due rows in
bounded batches (the claim step, `claiming.py` over `rows.claim`: one
write, beside the running transactions), hands each group to its destination in one SMTP transaction
on a connection kept open for the next (`handover`: in a process of its own
by default, else `smtpout` here; the hand-over step, `attempts.py`), or into the outbox Maildir when no
smarthost or route is configured, and writes what came of it
(the settle step, `settling.py` over `outcomes.settle_all`: the outcomes that arrive while one write is under
way go together in the next) while the worker goes on. 4xx replies,
timeouts and refused connections defer rows along `retry_schedule`; 5xx
bounces them. A destination that
fails is left alone for a while and never holds up the others: a new or
failed destination gets one connection until it answers, and no destination
takes every worker. `deliver_pending` does the same once, for tests and the
command line. This module holds the engine's state, its loop and its stop;
the three steps are the `Engine`'s bases. All reads and writes go through
the store's single writer. Will not render or queue mail (`queue.py`,
`notify.py`).

Crash window: a row is claimed ('sending') in a committed write before any
byte of it goes out, and marked 'sent' in a write after the server's reply
to DATA. If the process dies in between, the rows of the transactions then
in flight and of those whose reply has come but whose outcome is not yet
committed are still 'sending', and `recover` queues them again at the next
start: those recipients get the message a second time. No other row is
ever sent twice. The window is kept small and bounded: each outcome is
written the moment its reply arrives (its own write; the store's writer
commits the writes waiting together), and no transaction starts while the
recipients handed over and not yet recorded, with its own, would pass
`[delivery] crash_window` (shown by `listserv status`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict, deque
from datetime import datetime
from functools import partial

from listserv.delivery.attempts import Handing, personal_headers
from listserv.delivery.claiming import Claiming
from listserv.delivery.dkim import load_signer
from listserv.delivery.handover import Local, Remote
from listserv.delivery.outbox import make_outbox
from listserv.delivery.outcomes import Policy
from listserv.delivery.rows import Body, Group, Router, queue_report, recover, release
from listserv.delivery.settling import Settling
from listserv.delivery.smarthost import secure_destinations
from listserv.delivery.smtpout import MAILDIR
from listserv.site.clock import Steps, shift_waits
from listserv.site.faults import log_failure

__all__ = ["run_delivery", "deliver_pending", "personal_headers", "recover", "queue_report"]

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # the command line queues rows from another process, unannounced


async def run_delivery(site, stop: asyncio.Event, wake: asyncio.Event | None = None,
                       grace: float = 10.0, on_step=None) -> None:
    """Deliver until `stop` is set; setting `wake` says new rows are queued.
    On stop, transactions in flight get `grace` seconds to finish. SMTP runs
    in a process of its own unless `[delivery] own_process` is false. When
    the wall clock is stepped, the stored due times move with it (`clock.py`)
    and `on_step(seconds)` is told."""
    engine = Engine(site, time.time, own_process=site.settings.delivery.own_process)
    engine.steps, engine.on_step = Steps(), on_step
    await engine.run(stop=stop, wake=wake, grace=grace)


def deliver_pending(site, now=None) -> dict:
    """Send everything due at `now` (a datetime or epoch seconds; default: the
    clock) once; returns how many recipients' deliveries ended sent, deferred,
    bounced, failed."""
    if now is None:
        stamp = time.time()
    else:
        stamp = now.timestamp() if isinstance(now, datetime) else float(now)
    engine = Engine(site, lambda: stamp)
    asyncio.run(engine.run(drain=True))
    return {key: engine.counts.get(key, 0) for key in ("sent", "deferred", "bounced", "failed")}


class Engine(Claiming, Handing, Settling):
    """The workers' shared state: claimed groups, connections, destinations' health.
    Its steps are its bases: claim (`claiming.py`), hand-over (`attempts.py`)
    and settle (`settling.py`)."""

    def __init__(self, site, clock, own_process: bool = False):
        settings = site.settings
        self.site, self.clock = site, clock
        self.domain, self.web_url = settings.domain, settings.web.url
        delivery = settings.delivery
        self.concurrency, self.batch_size, self.verp = (delivery.concurrency,
                                                        delivery.batch_size, delivery.verp)
        self.router = Router(delivery)
        self.policy = Policy(delivery.retry_seconds, delivery.give_up_seconds, self.router)
        smtp = own_process and self.router.destinations != {MAILDIR}
        if MAILDIR in self.router.destinations:  # before the first copy, not by it
            make_outbox(site.outbox)
        self.signer = load_signer(site.folder, settings)  # ConfigError: a key is missing or bad
        self.handover = (Remote if smtp else Local)(delivery.helo or settings.domain,
                                                    delivery.timeout_seconds, self.concurrency,
                                                    secure_destinations(site), self.signer)
        self.stopping = False
        self.claiming: asyncio.Task | None = None
        self.unrecorded = 0  # outcomes not yet committed (being written)
        self.window = delivery.crash_window  # recipients a crash may send again, at most
        self.exposed = 0  # recipients handed over whose outcome is not yet committed
        self.recording: set[asyncio.Task] = set()  # outcomes being written
        self.record_failing = False  # the store refuses outcomes (a full disk)
        self.record_told = 0.0  # when the log last heard of it (monotonic)
        self.claim_error: BaseException | None = None
        self.ready: deque[Group] = deque()
        self.running: dict[asyncio.Task, Group] = {}
        self.claimed: Counter = Counter()  # rows ready or running, per destination
        self.pending = 0  # rows ready or running
        self.inflight: Counter = Counter()
        self.reached: set[str] = {MAILDIR}  # destinations that answered lately
        self.down: dict[str, tuple[float, str]] = {}  # destination -> (until, why)
        self.bodies: OrderedDict[int, Body] = OrderedDict()
        self.body_bytes = 0
        self.counts: Counter = Counter()
        self.again = True  # a claim may find something
        self.changed = asyncio.Event()
        self.steps: Steps | None = None  # with the real clock: its steps are watched
        self.on_step = None

    async def write(self, fn, *args, priority: int = 1, **options):
        if options:
            fn = partial(fn, **options)
        if self.site.writer is not None:
            return await self.site.write(fn, *args, priority=priority)
        return self.site.write_now(fn, *args)  # one-shot use without a writer thread

    # -- the loop ----------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None, wake: asyncio.Event | None = None,
                  drain: bool = False, grace: float = 10.0) -> None:
        watchers = [asyncio.create_task(self._watch(event, clear))
                    for event, clear in ((stop, False), (wake, True)) if event is not None]
        try:
            while not (stop is not None and stop.is_set()):
                # Workers are handed ready groups at once, also while a claim is
                # waiting for the store: the claim runs beside them.
                if self.steps is not None and (step := self.steps.step()):
                    await self._clock_stepped(step)
                self.start_ready()
                if self.claiming is None and self.should_claim():
                    self.again = False
                    self.claiming = asyncio.create_task(self.claim())
                    self.claiming.add_done_callback(self._claimed)
                if drain and self.claim_error is not None:
                    raise self.claim_error
                if drain and not (self.running or self.ready or self.again or self.claiming):
                    break
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), None if drain else POLL_SECONDS)
                except asyncio.TimeoutError:
                    self.again = True
                    self.handover.prune()
        finally:
            for watcher in watchers:
                watcher.cancel()
            await self.stop(grace)

    async def _clock_stepped(self, seconds: float) -> None:
        """The wall clock jumped: every stored wait keeps its length (no stall
        after a step back, no burst after a step forward), and so do ours."""
        try:
            moved = await self.write(shift_waits, seconds, priority=0)
        except Exception as error:  # the store refuses writes: the next step check retries
            self.steps.offset -= seconds
            log_failure(log, error, "could not move the waits after a clock step of %+.0f s",
                        seconds)
            return
        self.down = {dest: (until + seconds, why) for dest, (until, why) in self.down.items()}
        log.warning("the wall clock was stepped %+.0f s; %d waiting deliveries keep their "
                    "waits", seconds, moved)
        if self.on_step is not None:
            self.on_step(seconds)
        self.again = True

    async def _watch(self, event: asyncio.Event, clear: bool) -> None:
        while True:
            await event.wait()
            if clear:
                event.clear()
            self.again = True
            self.changed.set()
            if not clear:
                return

    async def stop(self, grace: float) -> None:
        """Unstarted groups go back to the queue; running ones get `grace` seconds,
        and so do outcomes still being written. Whatever cannot be written now
        (the store refusing writes) stays 'sending' and `recover` queues it
        again at the next start."""
        self.stopping = True
        if self.claiming is not None:  # its groups join the ready ones, released below
            await asyncio.wait([self.claiming])
        ids = [i for group in self.ready for i in group.ids]
        self.ready.clear()
        if self.running:
            _done, pending = await asyncio.wait(list(self.running), timeout=grace)
            for task in pending:
                ids += self.running[task].ids
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                log.warning("stopped %d transactions in flight; their rows are queued again",
                            len(pending))
        if ids:
            try:
                await self.write(release, ids)
            except Exception as error:
                log.error("could not queue %d claimed deliveries again (%s); the next "
                          "start does", len(ids), error)
        if self.recording:
            _done, pending = await asyncio.wait(list(self.recording), timeout=grace)
            for task in pending:
                task.cancel()
        await self.handover.close()
