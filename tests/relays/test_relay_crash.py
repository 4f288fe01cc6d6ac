"""Relays and hub killed with SIGKILL mid-work, restarted, counted at the sink:
nothing lost, nothing sent twice (SPEC §8, issue 5 point 8)."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone

from helpers import Server, free_port, send_mail
from pypdf import PdfReader
from relaykit import (
    HUB_DOMAIN,
    SECRET,
    make_hub,
    query,
    signed_publication,
    wait_until,
    whatsnew_payload,
    write_relay_site,
)

from listserv.site.folder import Site
from relays.hub import add_relay

POSTAL = 2400  # enough labels (100 A4 sheets) that building the batch takes a while


def start(folder, port: int | None = None) -> Server:
    return Server(folder, port=port or 0).start()


def publish(port: int, now: datetime, **options) -> None:
    send_mail(port, f"listserv-bounces@{HUB_DOMAIN}", ["relay@relay-a.example.org"],
              signed_publication(now, whatsnew_payload(), **options))


def test_a_relay_killed_halfway_through_a_postal_batch_builds_it_whole(tmp_path, sink):
    folder = write_relay_site(tmp_path / "relay-a", smarthost=sink.port, translators={},
                              deadline="1s")
    conn_site = Site(folder)
    with conn_site.db.atomic():
        conn_site.db.conn.executemany(
            "INSERT INTO relay_recipients (profile, name, language, postal_address, country, "
            "created_at) VALUES ('postal', ?, 'fr', ?, ?, '2026-11-23T09:00:00+00:00')",
            [(f"Reader {n:04d}", f"BP {n}; Bamako", ("ML", "SN", "NE", "BF")[n % 4])
             for n in range(POSTAL)])
    conn_site.db.conn.close()
    server = start(folder)
    publish(server.port, datetime.now(timezone.utc))
    building = folder / "data" / "postal" / ".whatsnew-17-fr.tmp"
    wait_until(lambda: query(folder, "SELECT status FROM postal_batches") == [("building",)],
               timeout=30, what="the batch being built")
    server.kill()  # its PDFs are being made: seconds' work for this many labels
    assert query(folder, "SELECT status FROM postal_batches") == [("building",)]
    server = start(folder)
    try:
        wait_until(lambda: query(folder, "SELECT status FROM postal_batches") == [("ready",)],
                   timeout=60, what="the batch built again")
    finally:
        server.stop()
    batch = folder / "data" / "postal" / "whatsnew-17-fr"
    assert not building.exists()
    with open(batch / "manifest.csv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["kind"] == "label"]
    assert len(rows) == POSTAL and len({r["name"] for r in rows}) == POSTAL
    assert [r["country"] for r in rows] == sorted(r["country"] for r in rows)
    assert len(PdfReader(str(batch / "labels.pdf")).pages) == POSTAL // 24
    (counts,) = query(folder, "SELECT countries FROM postal_batches")
    assert json.loads(counts[0]) == {"BF": 600, "ML": 600, "NE": 600, "SN": 600}


def test_a_relay_killed_around_its_translation_sheet_sends_it_once(tmp_path, sink):
    folder = write_relay_site(tmp_path / "relay-a", smarthost=sink.port, deadline="1h")
    site = Site(folder)
    with site.db.atomic():
        site.db.execute("INSERT INTO relay_recipients (profile, address, language, budget, "
                        "created_at) VALUES ('lowband', 'ana@example.org', 'fr', 20000, '')")
    site.db.conn.close()
    sink.handler.answer = lambda rcpt: "451 4.3.0 Try again later" \
        if rcpt == "tr@example.org" else None
    server = start(folder)
    publish(server.port, datetime.now(timezone.utc))
    wait_until(lambda: query(folder, "SELECT count(*) FROM deliveries WHERE ref LIKE "
                                     "'translation-sheet:%'") == [(1,)], what="the sheet")
    server.kill()
    server = start(folder, server.port)  # and killed again while the sheet waits
    server.kill()
    sink.handler.answer = lambda rcpt: None
    server = start(folder, server.port)
    try:
        (sheet,) = sink.wait_for_recipient("tr@example.org", timeout=30)
        reply = sheet["Reply-To"]
        numbers = [line[1:-1] for line in sheet.get_content().splitlines()
                   if line.startswith("[") and line.endswith("]")]
        send_mail(server.port, "tr@example.org", [reply],
                  f"From: tr@example.org\nTo: {reply}\nSubject: Re: sheet\n\n"
                  + "\n".join(f"[{n}] traduit {n}" for n in numbers) + "\n")
        sink.wait_for_recipient("ana@example.org", timeout=30)
        sink.wait_for_recipient("tr@example.org", count=2, timeout=30)
    finally:
        server.stop()
    assert len(sink.messages_to("tr@example.org")) == 2  # the sheet once, the thanks once
    assert len(sink.messages_to("ana@example.org")) == 1
    assert query(folder, "SELECT count(*) FROM translation_sheets") == [(1,)]
    assert query(folder, "SELECT count(*) FROM federation_refusals") == [(0,)]


def test_a_hub_killed_after_queuing_a_publication_sends_it_once(tmp_path, sink):
    relay_port, hub_port = free_port(), free_port()
    relay = write_relay_site(tmp_path / "relay-a", smarthost=hub_port)  # its acks
    hub = make_hub(tmp_path, routes={"relay-a.example.org": f"127.0.0.1:{relay_port}",
                                     "*": f"127.0.0.1:{sink.port}"})
    (tmp_path / "a.key").write_text(SECRET + "\n")
    now = datetime.now(timezone.utc)
    hub_site = Site(hub)
    hub_site.write_now(lambda db: add_relay(db, "relay-a", address="relay@relay-a.example.org",
                                            secret_file=tmp_path / "a.key", now=now))
    payload = whatsnew_payload()
    hub_site.write_now(lambda db: db["publications"].insert({
        "key": payload["key"], "kind": "whatsnew", "number": 17, "title": payload["title"],
        "language": "en", "payload": json.dumps(payload), "created_at": now.isoformat()}))
    hub_site.db.conn.close()
    hub_server = start(hub, hub_port)
    wait_until(lambda: query(hub, "SELECT count(*) FROM relay_sends") == [(1,)],
               what="the send queued")
    hub_server.kill()  # the relay is not even up yet: the send waits in the queue
    relay_server = Server(relay, port=relay_port).start()
    hub_server = start(hub, hub_port)
    try:
        wait_until(lambda: query(relay, "SELECT count(*) FROM relay_publications") == [(1,)],
                   timeout=30, what="the publication at the relay")
        wait_until(lambda: query(hub, "SELECT received_at IS NOT NULL FROM relay_sends")
                   == [(1,)], timeout=30, what="the acknowledgement")
    finally:
        hub_server.stop()
        relay_server.stop()
    assert query(hub, "SELECT count(*) FROM deliveries WHERE ref LIKE 'relay:%'") == [(1,)]
    assert query(relay, "SELECT count(*) FROM federation_refusals") == [(0,)]
