"""Full texts at a relay: an item trimmed in the bulletin goes to relays whole,
`get REF` at the relay returns the whole text, in the reader's language, and
the printed master copy prints it whole, with the centre's postal address
for asking by post."""

from __future__ import annotations

import email
import json
from datetime import timedelta

import pytest
from pypdf import PdfReader
from relaykit import (
    SECRET,
    add_recipients,
    body_text,
    outgoing,
    receive,
    run_pipeline,
    store_publication,
    whatsnew_payload,
    write_relay_site,
)

from listserv.delivery.engine import deliver_pending
from listserv.site.folder import Site
from relays import dispatch, hub, postal, translation

WHOLE = ("The village dug a well together over three dry months. Every family gave a day "
         "of work a week, the women's cooperative paid for the cement, and the school "
         "children carried water for the mortar. The well is forty metres deep and serves "
         "six hundred people; a committee of five keeps it clean and collects a small fee "
         "for repairs. Photos at https://example.org/photos/well.")
TRIMMED = "The village dug a well together over three dry months. Every family gave…"


def trimmed_payload() -> dict:
    payload = whatsnew_payload()
    item = payload["sections"][0]["items"][0]
    item.update(ref="INIT-1", text=TRIMMED)
    return payload


def test_the_hub_sends_relays_the_whole_text_of_each_trimmed_item(site, tmp_path, now):
    (tmp_path / "a.key").write_text(SECRET + "\n")
    with site.db.atomic():
        site.db["initiatives"].insert({
            "id": 1, "title": "A new well in Kayes", "text": WHOLE, "language": "en",
            "reporter": "awa@example.org", "status": "accepted", "created_at": now.isoformat(),
            "updated_at": now.isoformat()})
        hub.add_relay(site.db, "relay-a", address="relay@relay-a.example.org",
                      secret_file=tmp_path / "a.key", now=now)
        store_publication(site.db, trimmed_payload(), now)
        hub.send_publications(site.db, site, now)
    ((_, raw),) = outgoing(site, "relay:%")
    message = email.message_from_bytes(raw)
    (part,) = [p for p in message.walk() if p.get_content_type() == "application/json"]
    data = json.loads(part.get_payload(decode=True))
    items = data["envelope"]["body"]["publication"]["payload"]["sections"][0]["items"]
    assert items[0]["text"] == TRIMMED and items[0]["full"] == WHOLE
    assert "full" not in items[1]  # not an initiative of this hub: nothing to add


@pytest.fixture
def relay(tmp_path, sink, now) -> Site:
    folder = write_relay_site(tmp_path / "relay-a", smarthost=sink.port)
    with open(folder / "listserv.toml", "a", encoding="utf-8") as config:
        config.write('postal_return_address = "Centre régional; BP 3000; Dakar"\n'
                     'postal_country = "SN"\n')
    site = Site(folder)
    add_recipients(site, now, {"who": "ana@example.org", "profile": "lowband", "language": "en"},
                   {"who": "Fatou Ba", "profile": "postal", "language": "en",
                    "postal_address": "BP 45; Dakar", "country": "SN"})
    return site


def test_get_at_the_relay_returns_the_whole_text_and_paper_prints_it(relay, sink, now):
    payload = trimmed_payload()
    payload["sections"][0]["items"][0]["full"] = WHOLE
    payload["item_length"] = 80
    receive(relay, payload, now)
    with relay.db.atomic():
        translation.prepare_received(relay.db, relay, now)
        dispatch.dispatch_ready(relay.db, relay, now)
    deliver_pending(relay, now)
    (copy,) = sink.messages_to("ana@example.org")
    bulletin = body_text(copy)
    assert "forty metres deep" not in bulletin  # the bulletin stays brief
    assert "The village dug a well together" in bulletin
    ref = bulletin.split("More: get ")[1].split(",")[0].split()[0]

    later = now + timedelta(minutes=5)
    run_pipeline(relay, f"From: ana@example.org\nTo: listserv@relay-a.example.org\n"
                        f"Subject: get {ref}\nMessage-ID: <g@example.org>\n\n", later,
                 ["listserv@relay-a.example.org"], "ana@example.org")
    deliver_pending(relay, later)
    (answer,) = [m for m in sink.messages_to("ana@example.org")
                 if m["In-Reply-To"] == "<g@example.org>"]
    text = " ".join(body_text(answer).split())
    assert "The well is forty metres deep and serves six hundred people" in text
    assert "collects a small fee for repairs." in text

    assert postal.build_pending(relay, now) == 1
    (batch,) = postal.list_batches(relay.db)
    master = " ".join(" ".join(p.extract_text() for p in
                               PdfReader(f"{batch['folder']}/master.pdf").pages).split())
    assert "The well is forty metres deep and serves six hundred people" in master
    assert "write to Centre régional, BP 3000, Dakar" in master


def test_translators_translate_the_whole_text_once_and_the_bulletin_trims_it():
    payload = trimmed_payload()
    payload["sections"][0]["items"][0]["full"] = WHOLE
    segments = translation.segments_of(payload, "en")
    assert [s.source for s in segments if s.path.startswith("sections.0.items.0.")] == [
        "A new well in Kayes", WHOLE]
