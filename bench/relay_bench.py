"""How large a publication and how many recipients one relay node handles.

    python bench/relay_bench.py [--lowband N] [--postal N] [--items N]
                                [--item-bytes N] [--json FILE] [--keep]

Builds a relay site in a temporary folder (`[site] role = "relay"`, French
served, the translation memory already holding every segment so nothing
waits for a translator), with N lowband email recipients (French and
English, budgets of 4,000 and 20,000 bytes) and N postal recipients in
eight countries; runs `listserv serve` on it, delivering to the lean sink
(`sink.py`, its own process); and sends it one What's New of `--items`
items, signed as the hub signs it, over SMTP to its `relay@` address.
It measures, from that submit: the publication dispatched (segmented,
filled from memory, rendered per language and budget, every lowband part
queued, postal batches opened), the last lowband copy handed to the sink,
the postal batches built (master PDF, labels, manifest), and the server's
peak RSS. Prints a table and writes JSON. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Children, Server, Sink  # noqa: E402

SECRET = "b" * 48
HUB = "lists.example.org"
COUNTRIES = ("ML", "SN", "NE", "BF", "CI", "GH", "TG", "BJ")
WORDS = ("people take part by plain email wherever they are water wells seeds farmers "
         "network region centre report initiative meeting harvest school village river "
         "market cooperative training radio translation bulletin").split()


def text_of(size: int, seed: int) -> str:
    words, n = [], seed
    while len(" ".join(words)) < size:
        words.append(WORDS[n % len(WORDS)])
        n = n * 7 + 3
    return " ".join(words)[:size].rstrip() + "."


def payload_of(items: int, item_bytes: int) -> dict:
    entries = [{"ref": f"INIT-{n}", "title": f"Initiative {n}: {text_of(40, n)}",
                "text": text_of(item_bytes, n + 1), "link": f"https://example.org/i/{n}",
                "language": "en", "region": COUNTRIES[n % 8], "path": "geocultural",
                "forum": ""} for n in range(items)]
    return {"key": "whatsnew:1", "kind": "whatsnew", "number": 1, "volume": 1,
            "title": "What's New no. 1", "language": "en",
            "sections": [{"heading": "Regions and places", "subheading": "", "path":
                          "geocultural", "items": entries}],
            "headings": {"fr": {"geocultural": "Régions et lieux"}}, "text": "", "html": ""}


def make_relay(folder: Path, sink: str, lowband: int, postal: int, payload: dict) -> None:
    from relays.translation import segments_of

    folder.mkdir(parents=True)
    (folder / "listserv.toml").write_text(
        f'[site]\ndomain = "relay.example.org"\nrole = "relay"\nnode_id = "relay"\n'
        f'[delivery]\nsmarthost = "{sink}"\nbatch_size = 100\nconcurrency = 4\n'
        f'[relay]\nhub = "relay@{HUB}"\nlanguages = ["fr"]\ntranslators = {{}}\n'
        f'deadline = "1h"\n', encoding="utf-8")
    (folder / "relay.key").write_text(SECRET + "\n")
    from listserv.site.folder import Site
    site = Site(folder)
    db = site.db  # creates the schema
    now = datetime.now(timezone.utc).isoformat()
    db.conn.executemany(
        "INSERT INTO relay_recipients (profile, address, language, budget, created_at) "
        "VALUES ('lowband', ?, ?, ?, ?)",
        [(f"reader{n:06d}@d{n % 50}.example.net", "fr" if n % 4 else "en",
          4000 if n % 2 else 20000, now) for n in range(lowband)])
    db.conn.executemany(
        "INSERT INTO relay_recipients (profile, name, language, postal_address, country, "
        "created_at) VALUES ('postal', ?, ?, ?, ?, ?)",
        [(f"Reader {n:06d}", "fr" if n % 4 else "en", f"BP {n}; Quartier {n % 90}; Ville",
          COUNTRIES[n % 8], now) for n in range(postal)])
    db.conn.executemany(
        "INSERT OR REPLACE INTO translation_memory (source_language, language, source, text, "
        "updated_at) VALUES ('en', 'fr', ?, ?, ?)",
        [(" ".join(unicodedata.normalize("NFC", s.source).split()), "FR " + s.source, now)
         for s in segments_of(payload, "en")])
    db.conn.commit()
    db.conn.close()


def signed(payload: dict) -> bytes:
    from listserv.mail.compose import to_bytes
    from relays.federation import federation_message, new_envelope

    now = datetime.now(timezone.utc)
    body = {"publication": {k: payload[k] for k in ("key", "kind", "number", "title",
                                                    "language")} | {"payload": payload}}
    envelope = new_envelope("publication", HUB, "relay", body, now)
    return to_bytes(federation_message(envelope, SECRET.encode(), sender=f"relay@{HUB}",
                                       to="relay@relay.example.org", domain=HUB,
                                       subject="whatsnew:1", text="What's New", now=now))


def one(db_path: Path, sql: str):
    conn = sqlite3.connect(str(db_path), timeout=30)
    try:
        return conn.execute(sql).fetchone()
    finally:
        conn.close()


def run(args) -> dict:
    import smtplib

    payload = payload_of(args.items, args.item_bytes)
    raw = signed(payload)
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    children = Children()
    sink = Sink(children)
    folder = workdir / "relay"
    make_relay(folder, sink.address, args.lowband, args.postal, payload)
    server = Server(children, folder)
    db = folder / "data" / "listserv.db"
    base = sink.stats()
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        client.sendmail(f"listserv-bounces@{HUB}", ["relay@relay.example.org"], raw)
    accepted = time.monotonic()
    figures = {"publication_bytes": len(raw), "payload_bytes": len(json.dumps(payload)),
               "items": args.items, "lowband_recipients": args.lowband,
               "postal_recipients": args.postal}
    while one(db, "SELECT count(*) FROM relay_publications WHERE status = 'dispatched'"
              )[0] == 0:
        if time.monotonic() - start > 600:
            raise RuntimeError(f"not dispatched after 600 s: {server.tail()}")
        time.sleep(0.02)
    dispatched = time.monotonic()
    copies = one(db, "SELECT sum(size) FROM deliveries WHERE ref LIKE 'relay-lowband:%'")[0]
    parts = one(db, "SELECT count(DISTINCT d.ref), max(length(b.raw)) FROM deliveries d JOIN "
                    "bodies b ON b.id = d.body_id WHERE d.ref LIKE 'relay-lowband:%'")
    delivered = built = None
    while delivered is None or built is None:  # both are watched at once
        now = time.monotonic()
        if delivered is None and sink.stats().recipients - base.recipients >= copies + 1:
            delivered = now  # +1: the acknowledgement to the hub
        if built is None and not one(db, "SELECT count(*) FROM postal_batches "
                                         "WHERE status != 'ready'")[0]:
            built = now
        if now - start > 900:
            raise RuntimeError(f"not done after 900 s: {server.tail()}")
        time.sleep(0.02)
    batches = workdir / "relay" / "data" / "postal"
    pdf_bytes = sum(p.stat().st_size for p in batches.rglob("*.pdf"))
    memory = server.memory()
    server.stop()
    figures.update({
        "accepted_s": round(accepted - start, 3),
        "dispatched_s": round(dispatched - start, 3),
        "lowband_copies": copies, "lowband_parts_rendered": parts[0],
        "largest_part_bytes": parts[1],
        "lowband_delivered_s": round(delivered - start, 3),
        "lowband_copies_per_s": round(copies / max(delivered - dispatched, 1e-3), 1),
        "postal_built_s": round(built - start, 3), "postal_pdf_bytes": pdf_bytes,
        "peak_rss_mb": round(memory.get("VmHWM", 0) / 1024, 1)})
    if args.keep:
        print(f"kept {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    children.stop_all()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lowband", type=int, default=10000)
    parser.add_argument("--postal", type=int, default=2000)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--item-bytes", type=int, default=300)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    figures = run(args)
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key.ljust(width)}  {value}")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), **figures}, indent=2))


if __name__ == "__main__":
    main()
