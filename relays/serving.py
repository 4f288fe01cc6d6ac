"""What `listserv serve` runs for relays/: the handlers, one stage, the deadline job.

`relay_extensions` adds the relay site addresses to the pipeline's
Extensions (and, on a relay, checks `[relay]` before anything listens).
`start_relays` runs the relays stage on the server's loop: on the hub it
queues publications owed to relays; on a relay it segments what arrived,
passes deadlines, dispatches what is ready and builds postal batches (the
PDFs off the event loop, on a thread). The stage works from the store's
statuses, so on start it catches up on whatever a stop or a crash left,
and nothing is done twice. APScheduler wakes it at the next translation
deadline, which it works out from the store after every run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
from datetime import datetime, timezone

from listserv.errors import ConfigError
from relays import dispatch, hub, postal, translation
from relays.federation import prune_seen
from relays.handlers import fetch, site_handlers
from relays.node import check_relay_settings
from relays.upstream import relay_member_rule

log = logging.getLogger(__name__)

IDLE = 1.0  # seconds between looks when there is nothing to do


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def relay_extensions(site, extensions):
    """`extensions` with the relay addresses for this site's role added."""
    check_relay_settings(site)
    handlers = {**extensions.site, **site_handlers(site)}
    changes = {"site": handlers}
    if site.settings.site.role == "hub":  # relays' readers are members by relay
        changes["post"] = (relay_member_rule,) + tuple(extensions.post)
    if site.settings.site.role == "relay" and getattr(extensions, "fetch", "") is None:
        changes["fetch"] = fetch
    return dataclasses.replace(extensions, **changes)


def machine_translation(site):
    """The optional `[relay] machine_translation` function, or None."""
    name = site.settings.relay.machine_translation
    if not name:
        return None
    module, _, function = name.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{site.settings.source}: [relay] machine_translation '{name}' "
                          f"cannot be loaded: {error}") from None


class Stage:
    """The relays stage of one serve: steps while it finds work, else sleeps."""

    def __init__(self, site, scheduler, delivery_wake: asyncio.Event):
        self.site, self.scheduler, self.delivery_wake = site, scheduler, delivery_wake
        self.event = asyncio.Event()
        self.draft = machine_translation(site)
        self.deadline: datetime | None = None
        self.pruned: datetime | None = None

    def wake(self) -> None:
        self.event.set()

    async def step(self) -> bool:
        site, now = self.site, utcnow()
        if self.pruned is None or (now - self.pruned).total_seconds() > 3600:
            await site.write(prune_seen, now)
            self.pruned = now
        if site.settings.site.role == "hub":
            done = await site.write(hub.send_publications, site, now, 20)
        else:
            done = await site.write(translation.prepare_received, site, now, 5, self.draft)
            done += await site.write(translation.expire_due, site, now, 20)
            done += await site.write(dispatch.dispatch_ready, site, now, 2)
            done += await self.build_batch(now)
            await self.schedule_deadline()
        if done:
            self.delivery_wake.set()
        return bool(done)

    async def build_batch(self, now: datetime) -> int:
        batch = await self.site.write(lambda db: postal.next_building(db))
        if batch is None:
            return 0
        try:
            countries = await asyncio.to_thread(postal.build, self.site, batch)
        except Exception as error:
            log.exception("postal batch %s could not be built", batch)
            await self.site.write(postal.mark_failed, batch, f"{type(error).__name__}: {error}")
            return 0
        await self.site.write(postal.mark_built, batch, countries, utcnow())
        return 1

    async def schedule_deadline(self) -> None:
        deadline = await self.site.write(lambda db: translation.next_deadline(db))
        if deadline is None or deadline == self.deadline:
            return
        self.deadline = deadline
        self.scheduler.add_job(self.deadline_job, "date", run_date=max(deadline, utcnow()),
                               id="relay-deadline", replace_existing=True)

    async def deadline_job(self) -> None:
        """APScheduler runs a coroutine job on the server's loop: wake the stage there."""
        self.wake()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.event.clear()
            try:
                busy = await self.step()
            except Exception:
                log.exception("the relays stage failed; retrying shortly")
                busy = False
            if not busy:
                try:
                    await asyncio.wait_for(self.event.wait(), IDLE)
                except asyncio.TimeoutError:
                    pass


def start_relays(site, scheduler, stop: asyncio.Event, delivery_wake: asyncio.Event):
    """Start the relays stage; returns its task."""
    stage = Stage(site, scheduler, delivery_wake)
    return asyncio.create_task(stage.run(stop), name="relays")
