"""Benchmark of the archive (issue 12): each figure beside its ceiling, in one run.

    python bench/archive_bench.py [--posts 20000] [--search-posts 100000] [--repeat 3]
                                  [--skip-w1] [--json FILE]

- w1: bench/run.py's W1 (2,000 members, 100 posts through `listserv serve`)
  with the forum's archive `public`, beside the same run with it `none`; the
  archive may cost at most 10% of the deliveries/s.
- month: the month index of a forum with 20,000 archived posts, rendered
  and written (`pages.write_one(..., "month:M")`): under 2 s.
- search: `search.search` for two words over 100,000 archived posts in the
  FTS5 index: under 100 ms.

The month and search stores are filled with rows of the archive's own tables
(posts of ~1 KB, threads of 1 to 8). The figure is the best repetition.
Writes only in its temporary folder. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from listserv.archive import pages  # noqa: E402
from listserv.archive.search import search  # noqa: E402
from listserv.site import forums  # noqa: E402
from listserv.site.folder import Site  # noqa: E402
from listserv.site.init import init_site  # noqa: E402

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)
WORDS = ("water seeds women farmers radio school well market cooperative valley village "
         "training network river forest land rights health youth festival").split()
RARE = [f"{a}{b}" for a in ("kay", "mop", "tal", "sor", "ban") for b in ("ri", "du", "lo")]


def fill(folder: Path, posts: int, rng: random.Random) -> Site:
    init_site(folder, now=NOW, domain="lists.example.org")
    site = Site(folder)
    db = site.db
    forums.create(db, "peace", title="Peace workshop", path="thematic", now=NOW,
                  policy="open")
    forum_id = db.execute("SELECT id FROM forums WHERE slug = 'peace'").fetchone()[0]
    with db.conn:
        db.execute("PRAGMA foreign_keys = OFF")
        thread, rows, texts = 1, [], []
        for n in range(1, posts + 1):
            if rng.random() < 0.3:
                thread = n
            date = (NOW + timedelta(seconds=n * 60 * 24 * 30 * 24 // posts // 24)).isoformat()
            body = " ".join(rng.choice(WORDS) for _ in range(150)) + " " + rng.choice(RARE)
            subject = " ".join(rng.choice(WORDS) for _ in range(5)).capitalize()
            rows.append((n, forum_id, f"m{n}@example.org", None if thread == n else thread,
                         thread, 0 if thread == n else 1, "2026-12", date, subject,
                         "Ana", body))
            texts.append((n, subject, body, "peace"))
        db.conn.executemany(
            "INSERT INTO archive_posts (post_id, forum_id, header_id, parent_id, thread_id, "
            "depth, month, date, subject, author, text) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        db.conn.executemany("INSERT INTO archive_search (rowid, subject, body, forum) "
                            "VALUES (?,?,?,?)", texts)
    return site


def best_of(repeat: int, fn) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def w1(archive: str, folder: Path) -> float:
    out = folder / f"w1-{archive}.json"
    subprocess.run([sys.executable, str(Path(__file__).parent / "run.py"), "--only", "w1",
                    "--archive", archive, "--json", str(out)], check=False)
    return json.loads(out.read_text())["results"]["w1"]["per_second"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--search-posts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-w1", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = random.Random(12)
    results = {}
    with tempfile.TemporaryDirectory(prefix="archive-bench-") as tmp:
        tmp = Path(tmp)
        site = fill(tmp / "month", args.posts, rng)
        forum = dict(next(site.db.query("SELECT * FROM forums WHERE slug = 'peace'")))
        times = best_of(args.repeat, lambda: pages.write_one(site, site.db, forum,
                                                             "month:2026-12"))
        page = pages.root(site) / "peace" / "2026-12.html"
        results["month"] = {"posts": args.posts, "seconds": round(min(times), 3),
                            "runs": [round(t, 3) for t in times], "bytes": page.stat().st_size,
                            "target": "< 2 s", "passed": min(times) < 2}
        site = fill(tmp / "search", args.search_posts, rng)
        for label, words in (("search_rare", f"{RARE[0]} water"),
                             ("search_common", "water seeds")):
            times = best_of(args.repeat * 3, lambda: search(site.db, words, forums=["peace"],
                                                            initiatives=True))
            results[label] = {"posts": args.search_posts, "words": words,
                              "ms": round(min(times) * 1000, 1),
                              "runs_ms": [round(t * 1000, 1) for t in times],
                              "target": "< 100 ms", "passed": min(times) < 0.1}
        if not args.skip_w1:
            on, off = w1("public", tmp), w1("none", tmp)
            cost = 1 - on / off
            results["w1"] = {"archive_on_per_second": on, "archive_off_per_second": off,
                             "cost": round(cost, 3), "target": "archive costs <= 10%",
                             "passed": cost <= 0.10}
    for name, row in results.items():
        figure = {k: v for k, v in row.items() if k not in ("runs", "runs_ms")}
        print(f"{name:14} {'PASS' if row['passed'] else 'FAIL'}  {figure}")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(["python"] + sys.argv),
                                         "results": results}, indent=2) + "\n")
    return 0 if all(row["passed"] for row in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
