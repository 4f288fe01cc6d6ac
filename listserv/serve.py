"""`listserv serve`: intake, pipeline, delivery and scheduler in one process.

Wires the packages together on one asyncio loop: the SMTP/LMTP intake
server, the pipeline that handles received messages and distributes
approved posts, the delivery workers, the one-click web endpoint (when
configured), and APScheduler for periodic work. Everything that must
survive a crash is in SQLite before it is acted on, so on start it simply
resumes: messages still 'received' are handled, deliveries left 'sending'
are queued again. One serve per site (a lock file); SIGTERM or Ctrl-C stop
it cleanly, SIGKILL loses nothing accepted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from datetime import datetime, timedelta, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from listserv import delivery
from listserv.dkim import load_signer
from listserv.incoming import (Extensions, distribute_pending, pending_authors,
                               process_received)
from listserv.intake import start_intake
from listserv.settings import parse_hostport
from digests import wiring as digests_wiring
from moderation import stage as moderation_stage
from moderation.reminders import remind_due
from relays.serving import relay_extensions, start_relays

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def run(site, listen: str | None = None) -> None:
    """Serve the site until stopped. Raises ListservError before starting on
    a bad configuration, a second serve, or an unusable listen address."""
    settings = site.settings  # a ConfigError stops us here, before anything starts
    load_signer(site.folder, settings)  # and so does a missing, unreadable or wrong DKIM key
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mail.log", "apscheduler"):  # a line per SMTP command / job run
        logging.getLogger(noisy).setLevel(logging.WARNING)
    host, port = parse_hostport(listen or settings.smtp.listen)
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
    line a minute, and a line when it works again: not a traceback a second."""

    REPEAT_EVERY = 60.0  # seconds between lines about the same failure

    def __init__(self, name: str, step, idle: float = 1.0):
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
            log.exception("%s failed; retrying shortly", self.name)
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
                    await asyncio.wait_for(self.event.wait(), self.idle)
                except asyncio.TimeoutError:
                    pass


async def serve(site, host: str, port: int) -> None:
    settings = site.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    await site.write(delivery.recover)
    delivery_wake = asyncio.Event()

    async def distribute_step() -> bool:
        # DMARC lookups of the waiting posts' authors, off the store's writer
        await asyncio.to_thread(site.dmarc.prefetch, await site.write(pending_authors, 5))
        taken = await site.write(distribute_pending, site, utcnow(), 5)
        if taken:
            delivery_wake.set()
        return bool(taken)

    distributor = Wakeable("distribution", distribute_step)

    async def moderation_step() -> bool:
        taken = await site.write(moderation_stage.moderate, site, utcnow(), 50)
        if taken:
            delivery_wake.set()  # facilitators' notices
        return bool(taken)

    moderator = Wakeable("moderation", moderation_step)
    extensions = relay_extensions(site, wire_extensions(site))  # relay@, and a relay's addresses

    async def pipeline_step() -> bool:
        taken = await site.write(process_received, site, utcnow(), 5, extensions)
        if taken:
            distributor.wake()
            moderator.wake()
            delivery_wake.set()
        return bool(taken)

    pipeline = Wakeable("pipeline", pipeline_step)
    await digests_wiring.start(site)  # checked templates in place before any mail is answered
    server = await start_intake(site, host, port, pipeline.wake, extensions.site_addresses)
    web = None
    if settings.web.url:
        from listserv.web import start_web
        web_host, web_port = parse_hostport(settings.web.listen)
        web = start_web(site, web_host, web_port)

    scheduler = AsyncIOScheduler(timezone=settings.site.timezone)
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
    print(f"listserv: serving {settings.domain} on {host}:{port} "
          f"({settings.smtp.protocol}); delivering to {where}", file=sys.stderr, flush=True)
    tasks = [asyncio.create_task(pipeline.run(stop), name="pipeline"),
             asyncio.create_task(moderator.run(stop), name="moderation"),
             asyncio.create_task(distributor.run(stop), name="distribution"),
             asyncio.create_task(delivery.run_delivery(site, stop, delivery_wake),
                                 name="delivery"),
             start_relays(site, scheduler, stop, delivery_wake)]
    for stage in (pipeline, moderator, distributor):
        stage.wake()
    await stop.wait()
    log.info("stopping")
    server.close()
    await server.wait_closed()
    scheduler.shutdown(wait=False)
    if web is not None:
        web.shutdown()
    await asyncio.wait(tasks, timeout=30)


def wire_extensions(site=None) -> Extensions:
    """What the other packages add to the pipeline: decision tokens, site addresses,
    the documents of `get REF` (with `site`: whatsnew@ and templates@ too)."""
    digests = {} if site is None else {"site": digests_wiring.site_handlers(site.settings),
                                       "fetch": digests_wiring.hub_fetch(site.settings)}
    return Extensions(confirm=moderation_stage.CONFIRM_HANDLERS,
                      post=moderation_stage.POST_RULES, **digests)


async def _moderation_reminders(site, delivery_wake: asyncio.Event) -> None:
    """Reminders, escalations and expiries owed now, worked out from the store."""
    done = await site.write(remind_due, site, utcnow())
    if any(done.values()):
        delivery_wake.set()


async def _bounces(site, delivery_wake: asyncio.Event) -> None:
    """Bounce scores acted on: members disabled, warned, removed; daily summaries."""
    from listserv.bounce_actions import act_on_bounces
    done = await site.write(act_on_bounces, site, utcnow())
    if done["disabled"] or done["warned"] or done["summaries"]:
        delivery_wake.set()


async def _housekeeping(site) -> None:
    """Drop what no one needs any more: sent bodies after a week, spent tokens."""
    def prune(db, now: datetime) -> None:
        week_ago = (now - timedelta(days=7)).timestamp()
        db.execute("DELETE FROM deliveries WHERE status = 'sent' AND sent_at < ?", [week_ago])
        db.execute("DELETE FROM bodies WHERE created_at < ? AND NOT EXISTS "
                   "(SELECT 1 FROM deliveries d WHERE d.body_id = bodies.id)",
                   [(now - timedelta(days=7)).isoformat()])
        db.execute("DELETE FROM tokens WHERE expires_at < ?",
                   [(now - timedelta(days=30)).isoformat()])
    await site.write(prune, utcnow())
