"""The archive stage of `listserv serve`, after distribution.

Each step keeps what distribution has sent since the last step
(keep.archive_pending, on the store's writer), then writes the pages the
store marks in `archive_dirty` on a thread of its own with its own read
connection, and clears only the marks that did not change meanwhile (their
`gen`), so a crash at any moment leaves the marks to be done again on the
next start and never a page behind. `rebuild` writes every page again from
the store, for `listserv archive rebuild`. Writes through keep.py, pages.py
and bank.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

from listserv.archive import bank, pages
from listserv.archive.keep import archive_pending, mark
from listserv.site.store import connect

log = logging.getLogger(__name__)

KEEP_BATCH = 50
WRITE_BATCH = 400
PAGE_PACE = 2.0  # seconds from one round of page writing to the next


def marked(db, limit: int = WRITE_BATCH) -> list[tuple[int, str, int]]:
    # site pages last: a directory or bank written after the forums' pages
    return [tuple(row) for row in db.execute(
        "SELECT forum_id, what, gen FROM archive_dirty ORDER BY forum_id = 0, forum_id, "
        "what LIMIT ?", [limit])]


def clear(db, rows: list[tuple[int, str, int]]) -> None:
    db.conn.executemany("DELETE FROM archive_dirty WHERE forum_id = ? AND what = ? AND gen = ?",
                   rows)


def write_pending(site, db) -> int:
    """Write the marked pages with connection `db`; returns the rows written (the
    caller clears them on the writer)."""
    rows = marked(db)
    return pages.write_marked(site, db, rows, bank.write_site_page)


def mark_everything(db) -> None:
    """Every page of every forum and of the site, to be written again."""
    for (forum_id,) in db.execute("SELECT id FROM forums").fetchall():
        mark(db, forum_id, "forum")
    mark(db, 0, "directory", "bank")


class ArchiveStage:
    """One step: keep new posts, write marked pages. `step()` is a Wakeable step."""

    def __init__(self, site, pace: float = PAGE_PACE):
        self.site = site
        self.reader = None
        self.bank = None  # bank.bank_signature when the bank was last marked
        self.pace = pace
        self.resume_at = 0.0  # time.monotonic() before which no pages are written

    def wait(self) -> float:
        """Seconds until pages may be written again (0 when they may now): the
        Wakeable's longest sleep, so marks left by a burst are written once it
        is over even when nothing wakes the stage."""
        return max(0.0, self.resume_at - time.monotonic())

    async def step(self) -> bool:
        kept = await self.site.write(archive_pending, datetime.now(timezone.utc), KEEP_BATCH)
        signature = await self.site.write(bank.bank_signature)
        if signature != self.bank:  # initiatives or issues changed (or we just started)
            await self.site.write(_bank_changed)
            self.bank = signature
        if self.wait() > 0:  # pages were written moments ago: later, all at once
            return kept >= KEEP_BATCH
        rows = await asyncio.to_thread(self._write)
        if rows:
            await self.site.write(clear, rows)
            self.resume_at = time.monotonic() + self.pace
        if len(rows) >= WRITE_BATCH:  # a backlog (a rebuild's marks, a long outage): go on
            self.resume_at = 0.0
        return kept >= KEEP_BATCH or len(rows) >= WRITE_BATCH

    def _write(self) -> list:
        if self.reader is None:
            self.reader = connect(self.site.db_path)
        rows = marked(self.reader)
        return pages.write_marked(self.site, self.reader, rows, bank.write_site_page)


def _bank_changed(db) -> None:
    bank.sync_initiatives(db)
    mark(db, 0, "bank", "directory")


def rebuild(site, db, slug: str | None, now: datetime) -> int:
    """Write every page of forum `slug` (or of all forums and the site's own
    pages) again from the store; returns how many pages were rendered."""
    from listserv.site import forums

    chosen = [forums.get(db, slug)] if slug else forums.list_forums(db)
    count = 0
    for forum in chosen:
        count += pages.write_forum(site, db, forum)
    if not slug:
        with db.atomic():
            bank.sync_initiatives(db)
        for what in ("directory", "bank"):
            bank.write_site_page(site, db, what)
            count += 1
    return count
