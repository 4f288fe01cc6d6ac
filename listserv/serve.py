"""`listserv serve`: intake, pipeline, delivery and scheduler in one process.

Wires the packages together on one asyncio loop: the SMTP/LMTP intake
server, the pipeline that handles received messages and distributes
approved posts, the delivery workers, the one-click web endpoint (when
configured), and APScheduler for periodic work. Everything that must
survive a crash is in SQLite before it is acted on, so on start it simply
resumes: messages still 'received' are handled, deliveries left 'sending'
are queued again. One serve per site (a lock file); SIGTERM or Ctrl-C stop
it cleanly, SIGKILL loses nothing accepted, SIGHUP re-reads the templates
and the TLS certificate ([smtp] tls_cert, for new sessions), and whatever
listserv/service.py's RELOAD_HOOKS hold, without stopping.
Under systemd it reports READY/STOPPING on $NOTIFY_SOCKET (service.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from digests import wiring as digests_wiring
from listserv import service
from listserv.archive.stage import ArchiveStage
from listserv.delivery import autoreplies
from listserv.delivery import engine as delivery
from listserv.delivery.dkim import load_signer
from listserv.delivery.giveup import tell_failures
from listserv.delivery.outbox import prepare_outbox
from listserv.errors import ListservError
from listserv.intake.pipeline import (
    Extensions,
    distribute_pending,
    pending_authors,
    process_received,
)
from listserv.intake.smtp import start_intake
from listserv.intake.tls import IntakeTls
from listserv.site import mta
from listserv.site.faults import OneLine, log_failure
from listserv.site.retention import purge_old
from listserv.site.settings import parse_hostport
from listserv.site.store import connect
from moderation import stage as moderation_stage
from moderation.reminders import remind_due
from relays.serving import relay_extensions, start_relays

log = logging.getLogger(__name__)
PURGE_ROUND = 2000  # rows of each kind one housekeeping write removes

FAILURES_EVERY = 5.0  # seconds between looks for deliveries given up
JOBS_FINISH_WITHIN = 20.0  # seconds a scheduled job has to finish when we stop


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def run(site, listen: str | None = None) -> None:
    """Serve the site until stopped. Raises ListservError before starting on
    a bad configuration, a second serve, or an unusable listen address."""
    settings = site.settings  # a ConfigError stops us here, before anything starts
    load_signer(site.folder, settings)  # and so does a missing, unreadable or wrong DKIM key
    host, port = parse_hostport(listen or settings.smtp.listen)
    try:
        service.configure_logging(site)  # [log]: stderr or a file, and syslog
    except OSError as error:
        raise ListservError(f"{site.config_path}: [log] cannot be opened: {error}") from None
    for handler in logging.getLogger().handlers:  # a full disk: one line, not a traceback
        handler.addFilter(OneLine())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until serve() handles it: never fatal
    site.lock()
    site.start_writer()
    try:
        try:
            import uvloop
            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        runner(serve(site, host, port))
    finally:
        site.stop_writer()
        site.unlock()


class Wakeable:
    """A loop that runs `step` while it finds work, then sleeps until woken.

    A step that fails is tried again a second later. While it keeps failing
    the same way (a full disk, say), the log gets the traceback once, then a
    line a minute, and a line when it works again: not a traceback a second.
    A failure we foresee (a full disk, a locked database) is one line from
    the start, naming the stage and the error (`faults.py`)."""

    REPEAT_EVERY = 60.0  # seconds between lines about the same failure

    def __init__(self, name: str, step, idle: float | Callable[[], float] = 1.0):
        self.name, self.step, self.idle = name, step, idle
        self.event = asyncio.Event()
        self.failing: str | None = None  # the failure being repeated
        self.failures = 0
        self.told = 0.0  # when the log last heard of it

    def wake(self) -> None:
        self.event.set()

    def _failed(self, error: Exception) -> None:
        what = f"{type(error).__name__}: {error}"
        now = time.monotonic()
        if what != self.failing:
            self.failing, self.failures, self.told = what, 1, now
            log_failure(log, error, "%s failed; retrying shortly", self.name)
            return
        self.failures += 1
        if now - self.told >= self.REPEAT_EVERY:
            self.told = now
            log.error("%s still failing (%d tries so far): %s", self.name, self.failures, what)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.event.clear()
            try:
                busy = await self.step()
            except Exception as error:
                self._failed(error)
                busy = False
            else:
                if self.failing is not None:
                    log.warning("%s works again after %d failed tries", self.name,
                                self.failures)
                    self.failing = None
            if not busy:
                try:
                    await asyncio.wait_for(self.event.wait(),
                                           self.idle() if callable(self.idle) else self.idle)
                except asyncio.TimeoutError:
                    pass


async def serve(site, host: str, port: int) -> None:
    settings = site.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reloads: set[asyncio.Task] = set()

    await site.write(delivery.recover)
    if site.outbox.exists() or not (settings.delivery.smarthost or "*" in settings.delivery.routes):
        prepare_outbox(site.outbox, site.data / "set-aside" / "outbox")
    delivery_wake = asyncio.Event()

    reader = connect(site.db_path)  # distribution's own reads, on the to_thread workers

    def prefetch_authors() -> None:
        # DMARC lookups of the waiting posts' authors, read and looked up off the
        # store's writer (a round trip through it cost a post 6 ms) and the loop
        site.dmarc.prefetch(pending_authors(reader, 5))

    async def distribute_step() -> bool:
        await asyncio.to_thread(prefetch_authors)
        taken = await site.write(distribute_pending, site, utcnow(), 1, priority=0)
        if taken:
            delivery_wake.set()
            archiver.wake()
        return bool(taken)

    distributor = Wakeable("distribution", distribute_step)
    archive_stage = ArchiveStage(site)
    archiver = Wakeable("archive", archive_stage.step,  # after distribution, paced
                        idle=lambda: archive_stage.wait() or 5.0)

    async def moderation_step() -> bool:
        taken = await site.write(moderation_stage.moderate, site, utcnow(), 50)
        if taken:
            delivery_wake.set()  # facilitators' notices
        return bool(taken)

    moderator = Wakeable("moderation", moderation_step)
    extensions = relay_extensions(site, wire_extensions(site))  # relay@, and a relay's addresses
    try:  # maps written by `listserv mta postfix` follow forums created while we were down
        mta.refresh_maps(site, extensions.site_addresses)
    except ListservError as error:
        log.error("Postfix maps not rewritten: %s", error)

    async def pipeline_step() -> bool:
        taken = await site.write(process_received, site, utcnow(), 5, extensions)
        if taken:
            distributor.wake()
            moderator.wake()
            delivery_wake.set()
        return bool(taken)

    pipeline = Wakeable("pipeline", pipeline_step)

    async def failures_step() -> bool:  # deliveries given up: the poster, a daily summary
        if await site.write(tell_failures, site, utcnow()):
            delivery_wake.set()
        return False

    teller = Wakeable("failure notices", failures_step, idle=FAILURES_EVERY)
    await digests_wiring.start(site)  # checked templates in place before any mail is answered
    tls = IntakeTls(site)  # a certificate that does not load stops us here
    server = await start_intake(site, host, port, pipeline.wake, extensions.site_addresses,
                                tls)
    web = None
    if settings.web.url or settings.web.metrics:
        from listserv.web.listener import start_web
        web_host, web_port = parse_hostport(settings.web.listen)
        web = start_web(site, web_host, web_port)

    scheduler = AsyncIOScheduler(timezone=settings.site.timezone)
    running_jobs = RunningJobs(scheduler)
    scheduler.add_job(_housekeeping, "interval", hours=1, args=[site],
                      next_run_time=utcnow() + timedelta(seconds=30), id="housekeeping",
                      coalesce=True, max_instances=1)
    scheduler.add_job(_moderation_reminders, "interval",
                      seconds=settings.moderation.seconds("check_every"),
                      args=[site, delivery_wake], next_run_time=utcnow() + timedelta(seconds=1),
                      id="moderation-reminders", coalesce=True, max_instances=1)
    scheduler.add_job(_bounces, "interval", seconds=settings.bounces.seconds("check_every"),
                      args=[site, delivery_wake], next_run_time=utcnow() + timedelta(seconds=2),
                      id="bounces", coalesce=True, max_instances=1)
    digests_wiring.add_jobs(scheduler, site, delivery_wake.set)  # What's New, digests, templates
    scheduler.start()

    where = settings.delivery.smarthost or ("routes" if settings.delivery.routes else
                                            f"the outbox {site.outbox}")
    event_loop = type(loop).__module__.split(".")[0]  # "uvloop", or "asyncio" without it
    print(f"listserv: serving {settings.domain} on {host}:{port} "
          f"({settings.smtp.protocol}); delivering to {where}; event loop {event_loop}",
          file=sys.stderr, flush=True)
    tasks = [asyncio.create_task(pipeline.run(stop), name="pipeline"),
             asyncio.create_task(moderator.run(stop), name="moderation"),
             asyncio.create_task(distributor.run(stop), name="distribution"),
             asyncio.create_task(teller.run(stop), name="failure notices"),
             asyncio.create_task(archiver.run(stop), name="archive"),
             asyncio.create_task(delivery.run_delivery(site, stop, delivery_wake,
                                                       on_step=partial(_shift_jobs, scheduler)),
                                 name="delivery"),
             start_relays(site, scheduler, stop, delivery_wake)]
    for stage in (pipeline, moderator, distributor, archiver):
        stage.wake()

    def on_sighup() -> None:  # renewed certificates, templates, log file, RELOAD_HOOKS
        tls.reload()  # for new sessions; a file that fails to load keeps the old one
        task = asyncio.create_task(service.reload(
            site, lambda site: digests_wiring.check_templates(site, delivery_wake.set)))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    service.notify("READY=1", f"STATUS=Serving {settings.domain} on {host}:{port}")
    await stop.wait()
    service.notify("STOPPING=1")
    log.info("stopping")
    server.close()
    await server.wait_closed()
    await running_jobs.finish(JOBS_FINISH_WITHIN)  # a publication half-written is not cut off
    scheduler.shutdown(wait=False)
    if web is not None:
        web.shutdown()
    await asyncio.wait(tasks, timeout=30)
    reader.close()


class RunningJobs:
    """Which scheduled runs are under way, so that stopping can let them end:
    APScheduler's shutdown cancels a running coroutine job, which then logs its
    cancellation as a failure (and a What's New being published is cut off).
    Counted from the scheduler's own events: each run submitted is one
    (job, run time) until its executed, error or missed event."""

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler
        self.runs: set[tuple[str, datetime]] = set()
        self.idle = asyncio.Event()
        self.idle.set()
        scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_listener(self._ended, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
                               | EVENT_JOB_MISSED)

    def _submitted(self, event) -> None:
        self.runs.update((event.job_id, when) for when in event.scheduled_run_times)
        self.idle.clear()

    def _ended(self, event) -> None:
        self.runs.discard((event.job_id, event.scheduled_run_time))
        if not self.runs:
            self.idle.set()

    async def finish(self, timeout: float) -> None:
        """No new runs start; wait up to `timeout` seconds for those running."""
        self.scheduler.pause()
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("stopping with scheduled job(s) %s still running; they are cut off",
                        ", ".join(sorted({job for job, _ in self.runs})))


def wire_extensions(site=None) -> Extensions:
    """What the other packages add to the pipeline: decision tokens, site addresses,
    the documents of `get REF` (with `site`: whatsnew@ and templates@ too)."""
    digests = {} if site is None else {"site": digests_wiring.site_handlers(site.settings),
                                       "fetch": digests_wiring.hub_fetch(site.settings)}
    return Extensions(confirm=moderation_stage.CONFIRM_HANDLERS,
                      post=moderation_stage.POST_RULES, **digests)


def _shift_jobs(scheduler, seconds: float) -> None:
    """The wall clock was stepped: jobs that run every so often keep their
    interval (jobs at a time of day keep their time of day)."""
    for job in scheduler.get_jobs():
        if isinstance(job.trigger, IntervalTrigger) and job.next_run_time is not None:
            job.modify(next_run_time=job.next_run_time + timedelta(seconds=seconds))
    scheduler.wakeup()


async def _moderation_reminders(site, delivery_wake: asyncio.Event) -> None:
    """Reminders, escalations and expiries owed now, worked out from the store."""
    done = await site.write(remind_due, site, utcnow())
    if any(done.values()):
        delivery_wake.set()


async def _bounces(site, delivery_wake: asyncio.Event) -> None:
    """Bounce scores acted on: members disabled, warned, removed; daily summaries."""
    from listserv.delivery.bounce_actions import act_on_bounces
    done = await site.write(act_on_bounces, site, utcnow())
    if done["disabled"] or done["warned"] or done["summaries"]:
        delivery_wake.set()


async def _housekeeping(site) -> None:
    """Drop what no one needs any more ([site] keep_sent, keep_raw; spent
    tokens; the automatic-reply limit's old records),
    in bounded rounds so intake never waits long for the writer."""
    now, total = utcnow(), Counter()
    while True:
        done = await site.write(purge_old, site.settings, now)
        total.update(done)
        if max(done.values()) < PURGE_ROUND:
            break
        await asyncio.sleep(0.05)
    await site.write(autoreplies.prune, now)  # the reply limit's old records
    if any(total.values()):
        log.info("housekeeping: purged %s", ", ".join(f"{n} {k}" for k, n in total.items() if n))
