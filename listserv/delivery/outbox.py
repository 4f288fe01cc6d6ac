"""The outbox Maildir's folders: made before the first delivery, torn files set aside.

`prepare_outbox(folder, aside)` runs when `serve` starts, before any copy is
written: it creates the Maildir's `tmp/`, `new/` and `cur/` (so the first
copies of a new site are not deferred by a folder that two writers were
creating at once) and moves every file left in `tmp/` into `aside`, with a
log line for each. A file in `tmp/` is a copy whose write was cut short
(the process died between writing it and moving it to `new/`); its
delivery row was still 'sending', so the copy is written again whole, and
the torn one is kept only for whoever wants to look at it. Reads and writes
those folders only; never touches `new/` or `cur/`, which belong to the
reader of the outbox.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SUBFOLDERS = ("tmp", "new", "cur")


def make_outbox(folder: Path) -> None:
    """Create the Maildir's folders if they are missing; harmless when they exist,
    also with another thread or process creating them at the same moment."""
    for name in SUBFOLDERS:
        (folder / name).mkdir(parents=True, exist_ok=True, mode=0o700)


def prepare_outbox(folder: Path, aside: Path) -> list[Path]:
    """Make the outbox and set aside what a cut-short write left in its `tmp/`;
    returns where each torn file went. Call it while no copy is being written
    (at start, under the serve lock)."""
    make_outbox(folder)
    moved = []
    for torn in sorted((folder / "tmp").iterdir()):
        if not torn.is_file():
            continue
        aside.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = aside / torn.name
        try:
            size = torn.stat().st_size
            os.replace(torn, target)
        except OSError as error:
            log.error("torn file in the outbox %s (a write cut short) could not be set aside "
                      "(%s); remove it by hand", torn, error)
            continue
        log.warning("torn file in the outbox: %s (%d bytes, a copy whose write was cut "
                    "short; it is written again whole) set aside in %s", torn, size, target)
        moved.append(target)
    return moved
