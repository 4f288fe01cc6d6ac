"""Benchmark of the digests package (SPEC §9: What's New from 10,000 initiatives < 2 s).

    python bench/digests_bench.py [--initiatives 10000] [--posts 1000] [--repeat 3]
                                  [--json FILE]

Builds a real site in a temporary folder (`listserv init`), fills it with
the real code (forums on the three paths, members in four languages and
both profiles, accepted initiatives of ~400 characters, distributed posts
of ~2 KB), then times, in one transaction each, exactly what the server
does when a publication is owed:

- whatsnew: one What's New issue from N accepted initiatives: assembling,
  rendering text and HTML in every site language, storing the publication
  and queuing a copy per reader (`whatsnew.publish`); the store is rolled
  back after each repetition so every repetition builds the same issue.
- digest: one forum digest of M posts: the MIME digest and the RFC 1153
  text in each digest language and profile, stored and queued
  (`forum_digest.publish`).

The figure is the best repetition (noise on a shared machine only slows a
run down); every repetition is in the JSON. Writes only in its temporary
folder. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digests import forum_digest, whatsnew  # noqa: E402
from digests.slots import iso  # noqa: E402
from listserv.intake.pipeline import distribute_pending, process_received  # noqa: E402
from listserv.intake.smtp import store_incoming  # noqa: E402
from listserv.site import forums, members  # noqa: E402
from listserv.site.folder import Site  # noqa: E402
from listserv.site.init import init_site  # noqa: E402

LANGUAGES = ("en", "fr", "es", "pt")
WORDS = ("water seeds women farmers radio school well market cooperative valley village "
         "training network river forest land rights health youth festival").split()
REGIONS = ("Sahel", "Andes", "Mekong", "Great Lakes", "Balkans", "Amazon", "Maghreb", "")
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def make_site(folder: Path, posts: int) -> Site:
    init_site(folder, now=NOW, domain="lists.example.org")
    site = Site(folder)
    db = site.db
    for slug, path, language in (("sahel-network", "geocultural", "fr"),
                                 ("farmers", "socioprofessional", "es"),
                                 ("water", "thematic", "en")):
        forums.create(db, slug, title=slug.replace("-", " ").title(), path=path, now=NOW,
                      language=language, policy="open", digest="weekly")
    rows = [(n, {"address": f"ally{n}@d{n % 40}.example.org",
                 "language": LANGUAGES[n % 4], "mode": "digest" if n % 3 == 0 else "each",
                 "profile": "lowband" if n % 5 == 0 else "email"}) for n in range(2, 402)]
    members.import_rows(db, "water", rows, now=NOW, languages=LANGUAGES)
    rng = random.Random(17)
    body = "\r\n".join(sentence(rng, 12) for _ in range(25))
    start = NOW - timedelta(days=6)
    for n in range(posts):
        raw = (f"From: Ally {n} <ally{n + 2}@d{(n + 2) % 40}.example.org>\r\n"
               f"To: water@lists.example.org\r\nSubject: Post {n}\r\n"
               f"Message-ID: <post-{n}@example.org>\r\n\r\n{body}\r\n").encode()
        store_incoming(db, raw, f"ally{n + 2}@example.org", ["water@lists.example.org"],
                       start + timedelta(seconds=n))
    db.conn.commit()
    while process_received(db, site, start, limit=200):
        db.conn.commit()
    while distribute_pending(db, site, start, limit=200):
        db.conn.commit()
    db.conn.commit()
    return site


def add_initiatives(site: Site, count: int) -> None:
    rng = random.Random(42)
    paths = ("geocultural", "socioprofessional", "thematic", "")
    slugs = ("sahel-network", "farmers", "water", "")
    stamp = iso(NOW - timedelta(days=3))
    rows = []
    for n in range(count):
        rows.append((sentence(rng, 6), " ".join(sentence(rng, 10) for _ in range(5)),
                     f"https://example.org/i/{n}" if n % 2 else "", rng.choice(REGIONS),
                     paths[n % 4], slugs[n % 4], LANGUAGES[n % 4], f"ally{n}@example.org",
                     stamp, stamp, stamp))
    site.db.conn.executemany(
        "INSERT INTO initiatives (title, text, link, region, path, forum, language, reporter, "
        "status, created_at, updated_at, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
        "'accepted', ?, ?, ?)", rows)
    site.db.conn.commit()


def timed(site: Site, work) -> float:
    """Seconds `work(db)` takes in one transaction, which is then rolled back."""
    db = site.db
    db.execute("SAVEPOINT bench")
    started = time.perf_counter()
    try:
        work(db)
        return time.perf_counter() - started
    finally:
        db.execute("ROLLBACK TO SAVEPOINT bench")
        db.execute("RELEASE SAVEPOINT bench")


def _count(db, key: str) -> dict:
    """How many bodies and deliveries a publication made (inside the rolled-back work)."""
    bodies, size = db.execute("SELECT count(*), sum(length(raw)) FROM bodies WHERE ref = ? OR "
                              "ref LIKE ?", [key, key + ":%"]).fetchone()
    deliveries = db.execute("SELECT sum(size) FROM deliveries WHERE ref = ? OR ref LIKE ?",
                            [key, key + ":%"]).fetchone()[0]
    return {"bodies": bodies, "bytes_stored": size, "deliveries": deliveries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--initiatives", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"building a site with {args.posts} posts and {args.initiatives} initiatives...",
              file=sys.stderr)
        site = make_site(Path(folder) / "site", args.posts)
        add_initiatives(site, args.initiatives)
        rows = whatsnew.candidates(site.db, iso(NOW))
        forum = forums.get(site.db, "water")
        built = [timed(site, lambda db: whatsnew.store_issue(db, site, rows, None, iso(NOW),
                                                             NOW))
                 for _ in range(args.repeat)]
        issue = [timed(site, lambda db: whatsnew.publish(db, site, rows, None, iso(NOW), NOW))
                 for _ in range(args.repeat)]
        digest = [timed(site, lambda db: forum_digest.publish(db, site, forum, iso(NOW), NOW))
                  for _ in range(args.repeat)]
        copies = {}
        timed(site, lambda db: copies.update(whatsnew=_count(db, whatsnew.publish(
            db, site, rows, None, iso(NOW), NOW))))
        timed(site, lambda db: copies.update(digest=_count(db, forum_digest.publish(
            db, site, forum, iso(NOW), NOW))))
    result = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "command": "python bench/digests_bench.py " + " ".join(sys.argv[1:]),
        "whatsnew_build": {"initiatives": len(rows), "seconds": round(min(built), 3),
                           "target_seconds": 2.0, "repetitions": [round(s, 3) for s in built],
                           "what": "assembled, rendered as text and HTML in the site's "
                                   "language, stored as a publication"},
        "whatsnew_publish": {"initiatives": len(rows), "seconds": round(min(issue), 3),
                             "repetitions": [round(s, 3) for s in issue], **copies["whatsnew"],
                             "what": "built, rendered in every site language, a copy per "
                                     "language and profile stored and queued to each reader"},
        "digest": {"posts": args.posts, "seconds": round(min(digest), 3),
                   "repetitions": [round(s, 3) for s in digest], **copies["digest"],
                   "what": "MIME and RFC 1153 copies in each digest language, stored and "
                           "queued"},
    }
    print(f"What's New from {len(rows)} initiatives, built: "
          f"{result['whatsnew_build']['seconds']:.3f} s (target < 2 s); published in every "
          f"language and profile: {result['whatsnew_publish']['seconds']:.3f} s")
    print(f"Digest of {args.posts} posts: {result['digest']['seconds']:.3f} s")
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
