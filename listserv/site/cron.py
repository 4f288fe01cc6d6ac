"""Cron expressions as cron means them, turned into APScheduler triggers.

A schedule in `listserv.toml` is a cron expression: minute hour day month
weekday (a sixth field in front gives seconds). Cron numbers weekdays from
Sunday: 0 and 7 are Sunday, 1 is Monday, 6 is Saturday. APScheduler 3 counts
from Monday (0 is Monday), so "0 6 * * 0" handed to it as is fires on
Mondays. `weekdays_for_apscheduler` reads the weekday field the way cron
does (numbers, names mon-sun, lists, ranges, steps) and writes it as names,
which APScheduler cannot misread. A schedule that restricts both the day of
the month and the weekday is refused: cron fires on either, APScheduler
only on both. `cron_trigger` builds the trigger;
`check_cron` refuses what is not a cron expression with a line that says
why. Reads and writes nothing.
"""

from __future__ import annotations

import re

FIELDS = ("minute", "hour", "day", "month", "day_of_week")
NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # index = cron's number
_PART = re.compile(r"^(\*|[a-z]{3}|\d+)(?:-([a-z]{3}|\d+))?(?:/(\d+))?$")


def _day(token: str, field: str) -> int:
    """One weekday of a cron field as cron's number, 0 (Sunday) to 7 (Sunday)."""
    if token.isdigit():
        number = int(token)
        if number > 7:
            raise ValueError(f"weekday '{token}' in '{field}' is not 0-7 "
                             f"(0 and 7 are Sunday, 1 is Monday)")
        return number
    if token not in NAMES:
        raise ValueError(f"weekday '{token}' in '{field}' is not one of "
                         f"{', '.join(NAMES)} or 0-7")
    return NAMES.index(token)


def weekday_numbers(field: str) -> set[int] | None:
    """The days (0 = Sunday ... 6 = Saturday) a cron weekday field names;
    None for '*' (every day). ValueError naming the problem otherwise."""
    text = field.strip().lower()
    if text in ("*", "?"):
        return None
    days: set[int] = set()
    for part in text.split(","):
        match = _PART.match(part)
        if not match:
            raise ValueError(f"'{part}' in the weekday field '{field}' is not a weekday, a "
                             f"range like 1-5 or mon-fri, or a step like */2")
        start, end, step = match.groups()
        if start == "*":
            if end:
                raise ValueError(f"'{part}' in the weekday field '{field}' is not a range")
            first, last = 0, 6
        else:
            first = _day(start, field)
            last = _day(end, field) if end else (7 if step else first)
        if last < first:
            raise ValueError(f"the range '{part}' in the weekday field '{field}' goes "
                             f"backwards; write it from the earlier day, e.g. 1-5")
        every = int(step) if step else 1
        if every < 1:
            raise ValueError(f"the step in '{part}' of the weekday field must be at least 1")
        days.update(day % 7 for day in range(first, last + 1, every))
    return days


def weekdays_for_apscheduler(field: str) -> str:
    """A cron weekday field rewritten with names, so it means what cron means."""
    days = weekday_numbers(field)
    if days is None or len(days) == 7:
        return "*"
    return ",".join(NAMES[day] for day in sorted(days))


def trigger_fields(expression: str) -> dict[str, str]:
    """The CronTrigger keyword arguments of a five- or six-field expression."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"'{expression}' must be a cron expression of five fields "
                         f"(minute hour day month weekday), e.g. '0 6 1,15 * *'")
    names = (("second",) + FIELDS) if len(fields) == 6 else FIELDS
    values = dict(zip(names, fields))
    if values["day"] not in ("*", "?") and values["day_of_week"] not in ("*", "?"):
        # cron runs such a schedule on either day; APScheduler only on days that are both
        raise ValueError(f"'{expression}' names both days of the month and weekdays, which "
                         f"cron reads as either one; set one of them to '*'")
    values["day_of_week"] = weekdays_for_apscheduler(values["day_of_week"])
    return values


def cron_trigger(expression: str, tz: str):
    """An APScheduler CronTrigger that fires when cron would."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger(**trigger_fields(expression), timezone=tz)


def check_cron(expression: str) -> None:
    """ValueError with a clear reason when `expression` is not a cron expression."""
    try:
        cron_trigger(expression, "UTC")
    except ValueError as error:
        text = str(error)
        if expression in text:
            raise
        raise ValueError(f"'{expression}' is not a cron expression: {text}") from None
