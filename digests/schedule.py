"""When scheduled publications are owed, worked out from the store.

`publish_due(db, site, now)` is what the scheduler calls (at each slot,
every minute for digest sizes, and once on start to catch up): it asks each
kind of publication what it owes at `now` and publishes it, then marks
publications whose deliveries are all done as 'sent'. The scheduler only
wakes this code up; the rows say what was done, so a missed run catches up
and a second run publishes nothing twice. Calls down into `whatsnew.py`,
`forum_digest.py` and `publications.py`; none of them imports this module.
"""

from __future__ import annotations

import logging
from datetime import datetime

from digests import forum_digest, publications, whatsnew
from digests.slots import iso

log = logging.getLogger(__name__)


def publish_due(db, site, now: datetime) -> list[str]:
    """Publish whatever is owed at `now`; returns the keys of what was published.
    Each publication is built and queued in its own savepoint, so one that
    fails leaves the others (and is tried again at the next run)."""
    published = []
    if site.settings.site.role == "hub":
        for work in (whatsnew.publish_due, forum_digest.publish_due):
            try:
                with db.atomic():
                    published += work(db, site, now)
            except Exception:  # logged; the store still says it is owed, so it is retried
                log.exception("publishing failed at %s (%s)", iso(now), work.__module__)
    publications.finish_sending(db, now)
    return published
