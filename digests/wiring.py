"""How `listserv serve` and `listserv status` reach the digests package.

`site_handlers(settings)` gives the site addresses this package answers
(whatsnew@, whatsnew-request@, -join@, -leave@, -owner@, -confirm+CODE@,
templates@ and templates+CODE@, with their configured names) for
Extensions.site; `fetch` is the hook for `get REF` / `index` on a hub.
`start(site)` runs before the intake opens: the checked template copies
are made to match the store, and the site's templates are checked once.
`add_jobs` puts the scheduled work on APScheduler: the What's New schedule
itself, a tick (`[digest] check_every`) for digests (their slots and size thresholds) and
for marking publications sent, and the template check; each job only wakes
code that reads from the store what is owed, and the first tick runs at
start, which is the catch-up. `STATUS` is the section of `listserv status`.
Reads the store; writes through the modules it calls.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime, timedelta, timezone

from digests import bulletin, forum_digest, initiatives, publications, templating
from digests.fetch import fetch
from digests.schedule import publish_due
from digests.slots import digest_schedule, next_slot, trigger
from digests.template_mail import handle_templates_mail
from digests.template_strays import stray_templates
from listserv.mail.templates import environment
from listserv.site.settings import parse_duration

__all__ = ["site_handlers", "fetch", "start", "add_jobs", "STATUS"]

log = logging.getLogger(__name__)



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def site_handlers(settings) -> dict:
    news, templates = settings.whatsnew.address, settings.templates.address
    return {
        news: initiatives.handle_report,
        f"{news}-request": functools.partial(bulletin.handle_request, fetch=fetch),
        f"{news}-join": functools.partial(bulletin.handle_request, kind="join", fetch=fetch),
        f"{news}-leave": functools.partial(bulletin.handle_request, kind="leave", fetch=fetch),
        f"{news}-owner": bulletin.handle_owner,
        f"{news}-confirm": bulletin.handle_confirm,
        templates: handle_templates_mail,
    }


def hub_fetch(settings):
    """The `get`/`index` hook on a hub; a relay brings its own."""
    return fetch if settings.site.role == "hub" else None


async def check_templates(site, wake=None) -> None:
    try:
        changes = await asyncio.to_thread(templating.scan, site)
    except asyncio.CancelledError:  # the server is stopping; the next start checks again
        return
    if changes:
        await site.write(templating.apply, site, changes, utcnow())
        environment.cache_clear()  # a template cached from the shipped file is read afresh
        if wake:
            wake()


async def start(site) -> None:
    """Before mail comes in: checked copies match the store; hand edits are checked."""
    await site.write(lambda db: templating.ensure_active_files(db, site))
    await check_templates(site)


def add_jobs(scheduler, site, wake) -> None:
    """The digests' scheduled work; `wake()` tells delivery that mail is queued."""
    settings = site.settings

    async def publish() -> None:
        keys = await site.write(publish_due, site, utcnow())
        if keys:
            wake()

    tz = settings.site.timezone
    scheduler.add_job(publish, trigger(settings.whatsnew.schedule, tz), id="whatsnew",
                      coalesce=True, max_instances=1, misfire_grace_time=None)
    scheduler.add_job(publish, "interval", seconds=parse_duration(settings.digest.check_every),
                      next_run_time=utcnow(),
                      id="publications", coalesce=True, max_instances=1)
    scheduler.add_job(check_templates, "interval", args=[site, wake],
                      seconds=parse_duration(settings.templates.check_every),
                      next_run_time=utcnow() + timedelta(seconds=5), id="templates",
                      coalesce=True, max_instances=1)


# -- listserv status ------------------------------------------------------------------

def collect(site, now: datetime) -> dict:
    settings, db = site.settings, site.db
    last = publications.latest(db, "whatsnew")
    coming = next_slot(settings.whatsnew.schedule, settings.site.timezone, now)
    counts = dict(db.execute("SELECT CASE WHEN status = 'accepted' AND publication IS NOT NULL "
                             "THEN 'published' ELSE status END AS s, count(*) FROM initiatives "
                             "GROUP BY s").fetchall())
    digests = []
    for forum in db.query("SELECT * FROM forums WHERE digest != 'never' ORDER BY slug"):
        cron = digest_schedule(settings, forum["digest"])
        waiting = forum_digest.pending(db, forum, now.astimezone(timezone.utc).isoformat(),
                                       with_raw=False)
        readers = db.execute("SELECT count(*) FROM members WHERE forum_id = ? AND "
                             "mode = 'digest'", [forum["id"]]).fetchone()[0]
        digests.append({"forum": forum["slug"], "schedule": forum["digest"],
                        "readers": readers, "waiting": len(waiting),
                        "next": _stamp(next_slot(cron, settings.site.timezone, now))})
    return {
        "whatsnew": {"next": _stamp(coming) if settings.site.role == "hub" else None,
                     "last": last, "accepted": counts.get("accepted", 0),
                     "review": counts.get("review", 0), "published": counts.get("published", 0),
                     "readers": bulletin.audience_size(db, site)},
        "digests": digests,
        "sending": [row["key"] for row in db.query(
            "SELECT key FROM publications WHERE status != 'sent' ORDER BY id")],
        "templates": templating.problems(db, site),
        "stray_templates": stray_templates(site),
    }


def _stamp(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M %Z") if moment else None


def describe(data: dict) -> list[str]:
    news = data["whatsnew"]
    last = news["last"]
    lines = [f"What's New: next issue {news['next'] or 'not scheduled here'}, "
             f"{news['accepted']} accepted initiative(s) waiting for it, "
             f"{news['review']} waiting for review (see 'listserv initiative list'); "
             f"{news['readers']} reader(s)",
             "  last issue: " + (f"{last['key']} ({last['status']}, {last['created_at'][:16]})"
                                 if last else "none yet")]
    for row in data["digests"]:
        lines.append(f"Digest of {row['forum']}: {row['schedule']}, {row['waiting']} post(s) "
                     f"waiting, {row['readers']} digest reader(s), next {row['next']}")
    if data["sending"]:
        lines.append("Publications still being sent: " + ", ".join(data["sending"][:10]))
    if data["templates"]:
        lines.append("Templates: BROKEN (the last good version stays in use; fix the file, "
                     "or see 'listserv templates check'):")
        lines += [f"  {row['label']}: {row['error']}" for row in data["templates"]]
    else:
        lines.append("Templates: every site template in use passed its check")
    if data["stray_templates"]:
        lines.append("Files in templates/ that match no template (never used):")
        lines += [f"  templates/{row['path']}: {row['reason']}" for row in data["stray_templates"]]
    return lines


STATUS = ("publications", collect, describe)
