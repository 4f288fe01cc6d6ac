"""A kept bench site's run, step by step: posts received, posts distributed
and copies sent, counted at every step of time from the first post received.

    .venv/bin/python bench/run.py --only w1dkim --repeat 1 --keep
    .venv/bin/python bench/timeline.py /tmp/listserv-bench-XXXX/w1dkim-1

Where "distributed" lags "received" while "sent" climbs slowly, the fan-out
holds the run back, not the hand-over; where "sent" climbs at the ceiling's
rate only after the last post is distributed, likewise. Reads the store only.
"""

from __future__ import annotations

import argparse
import bisect
import sqlite3
import sys
from datetime import datetime
from pathlib import Path


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def timeline(db: sqlite3.Connection, step: float) -> list[tuple[float, int, int, int]]:
    posts = db.execute(
        "SELECT m.received_at, p.distributed_at FROM posts p "
        "JOIN messages m ON m.id = p.message_id ORDER BY p.id").fetchall()
    if not posts:
        return []
    start = min(stamp(received) for received, _ in posts)
    received = sorted(stamp(r) - start for r, _ in posts)
    distributed = sorted(stamp(d) - start for _, d in posts if d)
    sent = sorted((at - start, size) for at, size in db.execute(
        "SELECT sent_at, size FROM deliveries WHERE ref LIKE 'post:%' AND sent_at IS NOT NULL"))
    times = [at for at, _ in sent]
    totals, running = [], 0
    for _, size in sent:
        running += size
        totals.append(running)
    end = max([*received, *distributed, *times])
    rows, at = [], 0.0
    while at <= end + step:
        copies = bisect.bisect_right(times, at)
        rows.append((at, bisect.bisect_right(received, at), bisect.bisect_right(distributed, at),
                     totals[copies - 1] if copies else 0))
        at += step
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="a site kept by bench/run.py --keep")
    parser.add_argument("--step", type=float, default=0.5, help="seconds per line (0.5)")
    options = parser.parse_args()
    path = options.site / "data" / "listserv.db"
    if not path.exists():
        print(f"timeline: no store at {path}", file=sys.stderr)
        return 2
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = timeline(db, options.step)
    if not rows:
        print("timeline: no posts in this site", file=sys.stderr)
        return 1
    print("   t  received  distributed     sent")
    for at, received, distributed, sent in rows:
        print(f"{at:4.1f}  {received:8d}  {distributed:11d}  {sent:7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
