"""Schedule arithmetic: cron expressions, their slots, and the stored time form.

A schedule is a cron expression in the site's time zone (five fields, or six
with seconds first); `last_slot` is the latest time it fired at or before
`now`, `next_slot` the next one; `iso` is the one form times are stored and
compared in. Pure: reads and writes nothing, and imports no publication, so
every publication (and `schedule.py`, which calls them) can use it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from apscheduler.triggers.cron import CronTrigger

from listserv.site.cron import cron_trigger

FIELDS = ("minute", "hour", "day", "month", "day_of_week")
LOOKBACK = timedelta(days=800)


def iso(moment: datetime) -> str:
    """The one form times are stored and compared in: ISO 8601 in UTC."""
    return moment.astimezone(timezone.utc).isoformat()


def trigger(expression: str, tz: str) -> CronTrigger:
    """An APScheduler trigger for a checked cron expression, weekdays counted
    as cron counts them (see listserv/site/cron.py)."""
    return cron_trigger(expression, tz)


def next_slot(expression: str, tz: str, after: datetime) -> datetime | None:
    """The first time the schedule fires strictly after `after`."""
    return trigger(expression, tz).get_next_fire_time(None, after + timedelta(seconds=1))


def last_slot(expression: str, tz: str, now: datetime) -> datetime | None:
    """The latest time the schedule fired at or before `now` (None if not in
    the last two years). Looks back in doubling steps, so a schedule of every
    second and one of once a year cost the same few calls."""
    cron = trigger(expression, tz)
    step = timedelta(seconds=1)
    while True:
        fired = cron.get_next_fire_time(None, now - step)
        if fired is not None and fired <= now:
            break
        step *= 2
        if step > LOOKBACK:
            return None
    while True:
        following = cron.get_next_fire_time(None, fired + timedelta(seconds=1))
        if following is None or following > now:
            return fired
        fired = following


def digest_schedule(settings, schedule: str) -> str | None:
    """The cron expression of a forum's digest schedule ('daily', 'weekly')."""
    hour, minute = (int(part) for part in settings.digest.time.split(":"))
    if schedule == "daily":
        return f"{minute} {hour} * * *"
    if schedule == "weekly":
        return f"{minute} {hour} * * {settings.digest.weekday}"
    return None
