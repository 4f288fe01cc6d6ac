"""Schedules in listserv.toml mean what cron means: weekdays 0 and 7 are
Sunday, 1 is Monday; what cron and APScheduler would read differently is
refused with one line naming the file, the key and the reason."""

from __future__ import annotations

import json

import pytest
from helpers import listserv, write_site

WEDNESDAY = "2026-12-02T10:00:00+00:00"


def next_whatsnew(tmp_path, schedule: str, at: str = WEDNESDAY) -> str:
    folder = write_site(tmp_path / "site", extra=f'[whatsnew]\nschedule = "{schedule}"\n')
    result = listserv("status", "--json", "--at", at, site=folder, check=False)
    assert result.stdout, result.stderr
    return json.loads(result.stdout)["publications"]["whatsnew"]["next"]


@pytest.mark.parametrize("schedule, expected", [
    ("0 6 * * 0", "2026-12-06 06:00 UTC"),      # Sunday, not Monday the 7th
    ("0 6 * * 7", "2026-12-06 06:00 UTC"),      # 7 is Sunday too
    ("0 6 * * sun", "2026-12-06 06:00 UTC"),
    ("0 6 * * 1", "2026-12-07 06:00 UTC"),      # Monday
    ("0 6 * * 6", "2026-12-05 06:00 UTC"),      # Saturday
    ("0 6 * * 5-7", "2026-12-04 06:00 UTC"),    # Friday to Sunday
    ("0 6 * * 0-3", "2026-12-06 06:00 UTC"),    # Sunday to Wednesday, and Wednesday is past
    ("0 6 * * mon-fri", "2026-12-03 06:00 UTC"),
])
def test_weekday_numbers_count_from_sunday_as_in_cron(tmp_path, schedule, expected):
    assert next_whatsnew(tmp_path, schedule) == expected


def test_a_weekday_step_steps_from_sunday(tmp_path):
    # cron's */2 is Sunday, Tuesday, Thursday, Saturday; after Wednesday comes Thursday
    assert next_whatsnew(tmp_path, "0 6 * * */2") == "2026-12-03 06:00 UTC"
    assert next_whatsnew(tmp_path / "b", "0 6 * * */2", "2026-12-03T10:00:00+00:00") == \
        "2026-12-05 06:00 UTC"


def test_publish_says_the_next_issue_of_a_sunday_schedule_is_on_sunday(tmp_path):
    folder = write_site(tmp_path / "site", extra='[whatsnew]\nschedule = "0 6 * * 0"\n')
    result = listserv("whatsnew", "publish", "--at", "2026-12-07T09:00:00+00:00", site=folder)
    assert "next issue is due 2026-12-13 06:00" in result.stderr  # a Sunday, not the 14th


@pytest.mark.parametrize("schedule, reason", [
    ("0 6 * * 8", "weekday '8'"),
    ("0 6 * * moon", "'moon'"),
    ("0 6 * * 5-1", "goes backwards"),
    ("0 6 1,15 * 1", "either one"),
    ("0 6 * *", "five fields"),
])
def test_a_schedule_cron_would_read_otherwise_is_refused_in_one_line(tmp_path, schedule,
                                                                    reason):
    folder = write_site(tmp_path / "site", extra=f'[whatsnew]\nschedule = "{schedule}"\n')
    result = listserv("status", site=folder, check=False)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "[whatsnew] schedule" in line and reason in line
    assert "Traceback" not in result.stderr
