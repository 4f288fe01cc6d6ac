"""Translation at a relay: segments, memory, the sheet by email and its
reply, clear answers to incomplete or malformed replies, the deadline."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from helpers import listserv
from relaykit import (
    add_recipients,
    body_text,
    receive,
    run_pipeline,
    whatsnew_payload,
    write_relay_site,
)

from listserv.delivery.engine import deliver_pending
from listserv.site.folder import Site
from relays import translation
from relays.sheets import read_reply
from relays.translation import segments_of

TRANSLATOR = "tr@example.org"


@pytest.fixture
def relay(tmp_path, sink, now) -> Site:
    site = Site(write_relay_site(tmp_path / "relay-a", smarthost=sink.port,
                                 languages=("fr", "pt"), translators={"fr": TRANSLATOR}))
    add_recipients(site, now, {"who": "ana@example.org", "profile": "lowband",
                               "language": "fr"})
    return site


def prepared(site: Site, now, payload=None) -> dict:
    publication = receive(site, payload or whatsnew_payload(), now)
    with site.db.atomic():
        translation.prepare_received(site.db, site, now)
    return site.db["relay_publications"].get(publication["id"])


def segments(site: Site, language: str = "fr") -> dict[int, tuple[str, str]]:
    return {n: (status, text) for n, status, text in site.db.execute(
        "SELECT number, status, text FROM translation_segments WHERE language = ? "
        "ORDER BY number", [language])}


def sheet_mail(site: Site, sink, now):
    deliver_pending(site, now)
    (sheet,) = sink.wait_for_recipient(TRANSLATOR)
    return sheet


def reply_to_sheet(site: Site, sheet, text: str, now) -> None:
    address = sheet["Reply-To"]
    run_pipeline(site, f"From: Tomas <{TRANSLATOR}>\nTo: {address}\n"
                       f"Subject: Re: {sheet['Subject']}\nMessage-ID: <r{now.timestamp()}@x>\n"
                       f"\n{text}", now, [address], TRANSLATOR)
    deliver_pending(site, now)


def test_a_publication_is_split_into_numbered_segments_in_reading_order():
    found = segments_of(whatsnew_payload(), "en")
    assert [(s.number, s.path, s.source_language) for s in found][:5] == [
        (1, "title", "en"), (2, "sections.0.heading", "en"),
        (3, "sections.0.subheading", "en"), (4, "sections.0.items.0.title", "en"),
        (5, "sections.0.items.0.text", "en")]
    assert found[5].source == "Semences paysannes" and found[5].source_language == "fr"
    assert len(found) == 9


def test_only_what_is_not_known_goes_on_the_sheet(relay, now):
    publication = prepared(relay, now)
    assert publication["status"] == "translating"
    fr = segments(relay)
    assert fr[2] == ("memory", "Régions et lieux")  # the hub's own heading in French
    assert fr[6][0] == fr[7][0] == "same"  # an item written in French
    assert {n for n, (status, _) in fr.items() if status == "open"} == {1, 3, 4, 5, 8, 9}
    assert segments(relay, "pt") == {}  # nobody reads Portuguese at this relay


def test_the_translator_gets_one_numbered_sheet_with_a_reply_address(relay, sink, now):
    prepared(relay, now)
    sheet = sheet_mail(relay, sink, now)
    assert re.fullmatch(r"relay\+[0-9a-f]{32}@relay-a\.example\.org", sheet["Reply-To"])
    text = body_text(sheet)
    assert "[3]\n> A new well in Kayes" in text
    assert "[7]" not in text and "Semences" not in text
    assert sheet["Subject"] == "Feuille de traduction 1 : What's New no. 17 (en -> fr)"


def test_the_sheet_numbers_its_segments_from_1_without_gaps_and_replies_fill_the_right_ones(
        relay, sink, now):
    prepared(relay, now)  # segments 2, 6 and 7 are known already: the sheet asks for six
    sheet = sheet_mail(relay, sink, now)
    text = body_text(sheet)
    assert re.findall(r"^\[(\d+)\]$", text, re.MULTILINE) == ["1", "2", "3", "4", "5", "6"]
    assert "[2]\n> Sahel" in text and "[6]\n> Twelve schools now have clean water." in text
    assert "Écrits en anglais : 1, 2, 3, 4, 5, 6" in text
    reply_to_sheet(relay, sheet, "[2] =\n[3] Un nouveau puits à Kayes\n[7] Quelque chose\n", now)
    fr = segments(relay)
    assert fr[3] == ("translated", "Sahel")
    assert fr[4] == ("translated", "Un nouveau puits à Kayes")
    assert fr[2] == ("memory", "Régions et lieux") and fr[5][0] == "open"
    answer = body_text(sink.wait_for_recipient(TRANSLATOR, count=2)[1])
    assert "Reçus pour « What's New no. 17 » : 2, 3." in answer
    assert "Il manque encore : 1, 4, 5, 6." in answer
    assert "Absents de cette feuille (ignorés) : 7" in answer
    assert "[4]\n> The village dug a well together." in answer


def test_a_full_reply_fills_the_sheet_and_the_memory_and_the_next_issue_reuses_it(
        relay, sink, now):
    prepared(relay, now)
    sheet = sheet_mail(relay, sink, now)
    reply_to_sheet(relay, sheet, "[1] Quoi de neuf n° 17\n[2] =\n[3] Un nouveau puits à Kayes\n"
                   "[4] Le village a creusé un puits ensemble.\nPhotos : "
                   "https://example.org/photos/well.\n[5] De l'eau pour les écoles\n"
                   "[6] Douze écoles ont maintenant de l'eau potable.\n\n"
                   "On Mon, 23 Nov 2026, relay wrote:\n> [1]\n> What's New no. 17\n", now)
    fr = segments(relay)
    assert fr[3] == ("translated", "Sahel")
    assert fr[5][1] == "Le village a creusé un puits ensemble.\nPhotos : " \
                      "https://example.org/photos/well."
    assert relay.db["relay_publications"].get(1)["status"] == "ready"
    answer = sink.wait_for_recipient(TRANSLATOR, count=2)[1]
    assert answer["Subject"] == "Re: Feuille de traduction 1 : complète, merci"
    payload = whatsnew_payload(18)
    payload["sections"][0]["items"] = payload["sections"][0]["items"][2:]
    later = prepared(relay, now + timedelta(days=14), payload)
    assert later["status"] == "translating"  # only the new title is unknown
    open_now = [n for n, (status, _) in segments(relay).items() if status == "open"]
    assert relay.db.execute("SELECT count(*) FROM translation_segments WHERE publication_id "
                            "= ? AND status = 'open'", [later["id"]]).fetchone()[0] == 1
    assert open_now


def test_an_incomplete_reply_is_answered_with_what_is_missing_and_unchanged(relay, sink, now):
    prepared(relay, now)
    sheet = sheet_mail(relay, sink, now)
    reply_to_sheet(relay, sheet, "[1] Quoi de neuf n° 17\n[3] A new well in Kayes\n"
                   "[12] Quelque chose\n", now)
    answer = sink.wait_for_recipient(TRANSLATOR, count=2)[1]
    text = body_text(answer)
    assert answer["Subject"] == "Re: Feuille de traduction 1 : 1 reçus, 5 manquants"
    assert "Il manque encore : 2, 3, 4, 5, 6" in text
    assert "identiques à l'original : 3" in text
    assert "Absents de cette feuille (ignorés) : 12" in text
    assert "[4]\n> The village dug a well together." in text
    assert answer["Reply-To"] == sheet["Reply-To"]
    assert segments(relay)[1] == ("translated", "Quoi de neuf n° 17")


def test_a_reply_with_no_numbers_is_told_how_to_answer(relay, sink, now):
    prepared(relay, now)
    sheet = sheet_mail(relay, sink, now)
    reply_to_sheet(relay, sheet, "Voici mes traductions : Quoi de neuf, un puits...\n", now)
    answer = sink.wait_for_recipient(TRANSLATOR, count=2)[1]
    assert "aucun segment numéroté" in answer["Subject"]
    assert "[3] votre traduction" in body_text(answer)
    assert {s for s, _ in segments(relay).values()} == {"open", "memory", "same"}


def test_a_reply_written_between_the_quoted_segments_counts(relay, now):
    reply = read_reply("Here you are.\n\n> [1]\n> What's New\nQuoi de neuf\n>\n> [4]\n"
                       "> A new well\nUn nouveau puits\nà Kayes\n\n-- \nTomas\n[5] not read")
    assert reply.texts == {1: "Quoi de neuf", 4: "Un nouveau puits\nà Kayes"}


def test_an_unquoted_forwarded_original_is_not_read_as_translations():
    reply = read_reply("[1] Quoi de neuf\n\n-----Original Message-----\n[1]\n"
                       "> What's New\n[4] A new well\n")
    assert reply.texts == {1: "Quoi de neuf"}


def test_at_the_deadline_the_publication_is_ready_with_the_rest_marked_original(relay, now):
    publication = prepared(relay, now)
    with relay.db.atomic():
        assert translation.expire_due(relay.db, relay, now + timedelta(days=2)) == 0
    later = now + timedelta(days=3, seconds=1)
    with relay.db.atomic():
        assert translation.expire_due(relay.db, relay, later) == 1
        assert translation.expire_due(relay.db, relay, later) == 0  # never twice
    assert relay.db["relay_publications"].get(publication["id"])["status"] == "ready"
    assert {s for s, _ in segments(relay).values()} == {"original", "memory", "same"}
    assert relay.db.execute("SELECT status FROM translation_sheets").fetchone()[0] == "expired"
    acks = [r[0] for r in relay.db.execute("SELECT ref FROM deliveries WHERE ref LIKE "
                                           "'relay-ack:%' ORDER BY id")]
    assert acks == ["relay-ack:whatsnew:17:received", "relay-ack:whatsnew:17:translated"]


def test_a_late_reply_still_feeds_the_memory_and_says_it_came_late(relay, sink, now):
    prepared(relay, now)
    sheet = sheet_mail(relay, sink, now)
    late = now + timedelta(days=4)
    with relay.db.atomic():
        translation.expire_due(relay.db, relay, late)
    reply_to_sheet(relay, sheet, "[5] De l'eau pour les écoles\n", late)
    answer = sink.wait_for_recipient(TRANSLATOR, count=2)[1]
    assert "mémoire de traduction" in body_text(answer)
    assert translation.recall(relay.db, "en", "fr", "Water  for schools") == \
        "De l'eau pour les écoles"


def test_a_machine_translation_backend_may_prefill_drafts(relay, sink, now):
    publication = receive(relay, whatsnew_payload(), now)

    def draft(texts, source, target):
        return [f"<{target}> {text}" for text in texts]

    with relay.db.atomic():
        translation.prepare(relay.db, relay, publication, now, draft)
    assert relay.db.execute("SELECT draft FROM translation_segments WHERE number = 4"
                            ).fetchone()[0] == "<fr> A new well in Kayes"
    assert "> (brouillon : <fr> A new well in Kayes)" in body_text(sheet_mail(relay, sink, now))


def test_the_operator_can_show_and_submit_a_sheet_from_the_command_line(relay, now, tmp_path):
    prepared(relay, now)
    shown = listserv("translation", "show", "1", site=relay.folder).stdout
    assert "[6]\n> Twelve schools now have clean water." in shown
    listing = listserv("translation", "list", site=relay.folder).stdout
    assert "whatsnew:17" in listing and "open" in listing
    filled = tmp_path / "fr.txt"
    filled.write_text("[1] Quoi de neuf n° 17\n[2] =\n[3] Un puits\n[4] Un puits creusé.\n"
                      "[5] De l'eau\n[6] Douze écoles.\n", encoding="utf-8")
    done = listserv("translation", "submit", "1", str(filled), site=relay.folder)
    assert "Sheet 1: accepted 6; complete" in done.stderr
    assert relay.db["relay_publications"].get(1)["status"] == "ready"
    empty = tmp_path / "empty.txt"
    empty.write_text("nothing here\n")
    failed = listserv("translation", "submit", "1", str(empty), site=relay.folder,
                      check=False)
    assert failed.returncode == 1 and "no numbered segment" in failed.stderr
