"""Each language of a publication goes out when it is ready: a relay with
Portuguese and Spanish sends the Portuguese copies as soon as the Portuguese
sheet is complete, and the Spanish ones at the deadline with what they have."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from relaykit import (
    add_recipients,
    body_text,
    outgoing,
    parse,
    receive,
    whatsnew_payload,
    write_relay_site,
)

from listserv.site.folder import Site
from relays import dispatch, sheets, translation

PORTUGUESE = {"A new well in Kayes": "Um novo poço em Kayes",
              "Water for schools": "Água para as escolas",
              "Semences paysannes": "Sementes camponesas"}


@pytest.fixture
def relay(tmp_path, now) -> Site:
    site = Site(write_relay_site(tmp_path / "relay-b", name="relay-b", languages=("pt", "es"),
                                 translators={"pt": "tradutor@example.org",
                                              "es": "traductor@example.org"}))
    add_recipients(site, now,
                   {"who": "rui@example.org", "profile": "lowband", "language": "pt"},
                   {"who": "lucia@example.org", "profile": "lowband", "language": "es"},
                   {"who": "Joao Silva", "profile": "postal", "language": "pt",
                    "postal_address": "Rua 1; 1000 Lisboa", "country": "PT"})
    return site


def step(site: Site, now) -> None:
    """One turn of the relays stage, as `listserv serve` runs it."""
    with site.db.atomic():
        translation.prepare_received(site.db, site, now)
        translation.expire_due(site.db, site, now)
        while dispatch.dispatch_ready(site.db, site, now):
            pass


def fill_sheet(site: Site, language: str, now) -> None:
    (sheet_id,) = site.db.execute("SELECT id FROM translation_sheets WHERE language = ?",
                                  [language]).fetchone()
    lines = []
    for number, source in site.db.execute(
            "SELECT sheet_number, source FROM translation_segments WHERE language = ? AND "
            "status = 'open' ORDER BY sheet_number", [language]):
        lines.append(f"[{number}] {PORTUGUESE.get(source, 'Texto em português ' + str(number))}")
    with site.db.atomic():
        sheets.submit_file(site.db, site, sheet_id, "\n".join(lines) + "\n", "tradutor", now)


def readers_with_copies(site: Site, key: str) -> set[str]:
    return {recipient for recipient, _ in outgoing(site, f"relay-lowband:{key}:%")}


def test_a_complete_language_goes_out_at_once_while_the_other_waits_for_its_deadline(
        relay, now):
    publication = receive(relay, whatsnew_payload(), now)
    step(relay, now)
    assert readers_with_copies(relay, "whatsnew:17") == set()

    fill_sheet(relay, "pt", now + timedelta(hours=2))
    step(relay, now + timedelta(hours=2))
    assert readers_with_copies(relay, "whatsnew:17") == {"rui@example.org"}
    (batch,) = relay.db.execute("SELECT id, language FROM postal_batches").fetchall()
    assert batch[1] == "pt"
    (copy,) = [parse(raw) for who, raw in outgoing(relay, "relay-lowband:whatsnew:17:pt:%")]
    assert "Um novo poço em Kayes" in body_text(copy)
    row = relay.db["relay_publications"].get(publication["id"])
    assert row["status"] == "translating"
    assert not outgoing(relay, "relay-ack:whatsnew:17:dispatched")

    # The Spanish reader waits until the deadline, then gets what there is.
    step(relay, now + timedelta(days=2))
    assert "lucia@example.org" not in readers_with_copies(relay, "whatsnew:17")
    step(relay, now + timedelta(days=3, minutes=1))
    assert readers_with_copies(relay, "whatsnew:17") == {"rui@example.org",
                                                          "lucia@example.org"}
    (spanish,) = [parse(raw) for who, raw in outgoing(relay, "relay-lowband:whatsnew:17:es:%")]
    assert "[en] A new well in Kayes" in body_text(spanish)
    row = relay.db["relay_publications"].get(publication["id"])
    assert row["status"] == "dispatched"
    counts = json.loads(row["counts"])
    assert counts["lowband"]["recipients"] == 2 and counts["postal"]["recipients"] == 1
    (ack,) = outgoing(relay, "relay-ack:whatsnew:17:dispatched")
    assert b"dispatched" in ack[1]
    # Dispatching again sends nobody anything.
    before = relay.db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    step(relay, now + timedelta(days=3, minutes=2))
    with relay.db.atomic():
        dispatch.dispatch(relay.db, relay, row, now + timedelta(days=3, minutes=3))
    assert relay.db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == before


def test_when_every_sheet_is_complete_the_publication_is_dispatched_before_the_deadline(
        relay, now):
    publication = receive(relay, whatsnew_payload(), now)
    step(relay, now)
    fill_sheet(relay, "pt", now + timedelta(hours=1))
    fill_sheet(relay, "es", now + timedelta(hours=1))
    step(relay, now + timedelta(hours=1))
    row = relay.db["relay_publications"].get(publication["id"])
    assert row["status"] == "dispatched"
    assert readers_with_copies(relay, "whatsnew:17") == {"rui@example.org",
                                                          "lucia@example.org"}
