"""The delivery engine: the outbound queue handed to mail servers.

`run_delivery` runs on the server's event loop: it claims due rows in
bounded batches (`deliveries.claim`, one write, beside the running
transactions), hands each group to its destination in one SMTP transaction
on a connection kept open for the next (`handover`: in a process of its own
by default, else `smtpout` here), or into the outbox Maildir when no
smarthost or route is configured, and writes what came of it
(`deliveries.settle_all`: the outcomes that arrive while one write is under
way go together in the next) while the worker goes on. 4xx replies,
timeouts and refused connections defer rows along `retry_schedule`; 5xx
bounces them. A destination that
fails is left alone for a while and never holds up the others: a new or
failed destination gets one connection until it answers, and no destination
takes every worker. `deliver_pending` does the same once, for tests and the
command line. All reads and writes go through the store's single writer.
Will not render or queue mail (`queue.py`, `notify.py`).

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
import email.utils
import logging
import re
import time
from collections import Counter, OrderedDict, deque
from datetime import datetime
from functools import partial

from listserv.delivery.bounces import verp_sender
from listserv.delivery.dkim import crlf, load_signer
from listserv.delivery.handover import Local, Remote, Skipped, personal_copy
from listserv.delivery.outbox import make_outbox
from listserv.delivery.rows import (
    Body,
    Group,
    Outcome,
    Policy,
    Router,
    claim,
    load_bodies,
    queue_report,
    recover,
    release,
    settle_all,
)
from listserv.delivery.smarthost import secure_destinations
from listserv.delivery.smtpout import MAILDIR, Unavailable, write_outbox
from listserv.mail.addresses import is_address
from listserv.mail.tokens import short_mac, sign_link
from listserv.site.clock import Steps, shift_waits
from listserv.site.faults import log_failure

__all__ = ["run_delivery", "deliver_pending", "personal_headers", "recover", "queue_report"]

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # the command line queues rows from another process, unannounced
BODY_CACHE_BYTES = 8 * 1024 * 1024  # bodies kept in memory; a soak levels off under it
AHEAD = 4  # transactions per connection claimed ahead (running and queued included)


def personal_headers(secret: bytes, web_url: str, slug: str, domain: str,
                     recipient: str) -> bytes:
    """The recipient's own RFC 2369/8058 unsubscribe headers, as header lines."""
    mailto = f"<mailto:{slug}-leave+{short_mac(secret, 'leave', slug, recipient)}@{domain}>"
    if not web_url:
        return f"List-Unsubscribe: {mailto}\r\n".encode("utf-8")
    token = sign_link(secret, "u", slug, recipient)
    link = f"<{web_url.rstrip('/')}/unsubscribe/{token}>"
    return (f"List-Unsubscribe: {link},\r\n {mailto}\r\n"
            f"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n").encode("utf-8")


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


class Engine:
    """The workers' shared state: claimed groups, connections, destinations' health."""

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

    def _claimed(self, task: asyncio.Task) -> None:
        self.claiming = None
        if not task.cancelled() and task.exception() is not None:
            self.claim_error = task.exception()
            log.error("claiming deliveries failed (%s: %s); trying again shortly",
                      type(self.claim_error).__name__, self.claim_error)
        self.changed.set()

    async def _watch(self, event: asyncio.Event, clear: bool) -> None:
        while True:
            await event.wait()
            if clear:
                event.clear()
            self.again = True
            self.changed.set()
            if not clear:
                return

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

    # -- one group -----------------------------------------------------------------
    async def deliver(self, group: Group) -> None:
        body = None
        try:
            body = await self._body(group.body_id)
            outcome = await self.attempt(group, body)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the message's own problem: a few tries, then set aside
            log_failure(log, error, "delivering body %s failed", group.body_id)
            outcome = Outcome(forum_id=body.forum_id if body else None, internal=True)
            outcome.defer(group.ids, f"internal error: {type(error).__name__}: {error}")
        if outcome.deferred or outcome.bounced or outcome.failed:
            log.info("body %s via %s: %d sent, %d deferred, %d bounced, %d failed (%s)",
                     group.body_id, group.destination, len(outcome.sent),
                     sum(map(len, outcome.deferred.values())), len(outcome.bounced),
                     sum(map(len, outcome.failed.values())),
                     next(iter(outcome.deferred), "") or next(iter(outcome.failed), "")
                     or (outcome.bounced[0][3] if outcome.bounced else ""))
        # The worker is free for its next transaction while the outcome is written,
        # at once and on its own (the store commits the writes waiting together);
        # until it commits, the rows stay 'sending' and no claim takes them.
        self.unrecorded += 1
        task = asyncio.create_task(self._record(outcome, len(group.recipients)))
        self.recording.add(task)
        task.add_done_callback(self.recording.discard)

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

    async def attempt(self, group: Group, body: Body | None) -> Outcome:
        outcome = Outcome(forum_id=body.forum_id if body else None)
        now = self.clock()
        until, why = self.down.get(group.destination, (0.0, ""))
        if until > now:
            outcome.postponed = (group.ids, until, why)
            return outcome
        if body is None or body.raw is None:
            outcome.fail(group.ids, "the stored message is missing or not a message")
            return outcome
        ended: dict[str, tuple] = {}  # recipient -> how it ended, when not sent
        recipients = []
        for recipient in group.recipients:
            if _sendable(recipient):
                recipients.append(recipient)
            else:
                ended[recipient] = ("fail", f"'{recipient[:100]}' cannot be used as an address")
        if not recipients:
            return _by_row(group, ended, outcome)
        sender = group.sender
        if (self.verp or body.personal) and len(group.recipients) == 1:  # its own address
            sender = verp_sender(self.site.secret, sender, group.ids[0], self.domain)
        prefix = b""
        if body.personal and body.slug:
            prefix = personal_headers(self.site.secret, self.web_url, body.slug, self.domain,
                                      recipients[0])
        raw, sign = self._prepared(body), bool(self.signer and body.personal)
        if group.destination == MAILDIR:
            try:
                await asyncio.to_thread(write_outbox, self.site.outbox,
                                        personal_copy(self.signer if sign else None, prefix,
                                                      raw), sender, recipients)
            except OSError as error:
                ended.update((r, ("defer", f"cannot write the outbox: {error}"))
                             for r in recipients)
            return _by_row(group, ended, outcome)
        try:
            handover = await self.handover.transact(
                group.destination, self.cap(group.destination), sender, recipients,
                group.body_id, prefix, raw, sign)
        except Skipped as error:  # its destination failed just now: wait with it
            until = self.down.get(group.destination, (now + self.policy.retry[0], ""))[0]
            outcome.postponed = (group.ids, until, str(error))  # untried: all wait
            return outcome
        except Unavailable as error:
            self._mark_down(group.destination, str(error), outcome)
            ended.update((r, ("defer", str(error))) for r in recipients)
            return _by_row(group, ended, outcome)
        self.reached.add(group.destination)
        if handover.unavailable:
            self._mark_down(group.destination, handover.unavailable, outcome)
        for recipient, error in handover.temporary.items():
            ended[recipient] = ("defer", error)
        for recipient, (code, text) in handover.permanent.items():
            ended[recipient] = ("bounce", code, text)
        for recipient, reason in handover.failed.items():
            ended[recipient] = ("fail", reason)
        if len(handover.sent) + len(ended) != len(group.recipients):  # never, but if so:
            sent = set(handover.sent)  # a recipient nobody answered for is tried again
            ended.update((r, ("defer", "no reply for this recipient")) for r in recipients
                         if r not in sent and r not in ended)
        return _by_row(group, ended, outcome)

    def _mark_down(self, destination: str, why: str, outcome: Outcome) -> None:
        """Leave a failing destination alone until its first retry is due; its
        other due rows wait with it (in the same write as this outcome)."""
        until = self.clock() + max(1, self.policy.retry[0])
        self.down[destination] = (until, why)
        self.reached.discard(destination)
        outcome.down = (destination, until, why)
        log.warning("destination %s is unavailable until %s: %s", destination,
                    time.strftime("%H:%M:%S", time.localtime(until)), why)

    def _prepared(self, body: Body) -> bytes:
        """The body as it goes out: CRLF line ends and, when copies are identical,
        DKIM-signed once (a personal copy is signed as a whole at hand-over)."""
        if body.ready is None:
            raw = dated(body.raw, self.domain, self.clock())
            raw = crlf(raw) if self.signer else raw
            if self.signer and not body.personal:
                raw = self.signer.sign(raw) + raw
            body.ready = raw
        return body.ready

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


def _by_row(group: Group, ended: dict[str, tuple], outcome: Outcome) -> Outcome:
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


_HEAD_END = re.compile(rb"\r?\n\r?\n")


def dated(raw: bytes, domain: str, now: float) -> bytes:
    """`raw` with a Date and a Message-ID on top when its header has none (mail
    passed on as it came, e.g. to facilitators, may lack them)."""
    end = _HEAD_END.search(raw)
    head = raw[:end.start()] if end else raw
    missing = b""
    if not re.search(rb"(?im)^date[ \t]*:", head):
        missing += f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n".encode()
    if not re.search(rb"(?im)^message-id[ \t]*:", head):
        missing += f"Message-ID: {email.utils.make_msgid(domain=domain)}\r\n".encode()
    return missing + raw if missing else raw


_PLAIN = re.compile(r"[^@<>\s\x00-\x1f\x7f]+@[^@<>\s\x00-\x1f\x7f]+")


def _sendable(address: str) -> bool:
    """An address we can put on an RCPT line: one @, no spaces, brackets or
    controls (the common case, checked first and cheaply), or one that our
    address syntax accepts (a quoted local part, say)."""
    return _PLAIN.fullmatch(address) is not None or is_address(address)
