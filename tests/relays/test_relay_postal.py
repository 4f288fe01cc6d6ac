"""Postal delivery at a relay: per publication and language a print-ready A4
master copy, address labels and a CSV manifest, by country, in a batch
folder; rebuilt whole after a crash; marked sent by the operator."""

from __future__ import annotations

import csv
import email
import io
import json
from datetime import timedelta

import pytest
from helpers import listserv
from pypdf import PdfReader
from relaykit import (
    HUB_DOMAIN,
    add_recipients,
    outgoing,
    receive,
    whatsnew_payload,
    write_relay_site,
)

from listserv.site.folder import Site
from relays import dispatch, postal, sheets, translation

FRENCH = ("[1] Quoi de neuf n° 17\n[3] =\n[4] Un nouveau puits à Kayes\n"
          "[5] Le village a creusé un puits, ensemble.\n[8] De l'eau pour les écoles\n"
          "[9] Douze écoles ont désormais de l'eau potable.\n")


@pytest.fixture
def relay(tmp_path, sink, now) -> Site:
    site = Site(write_relay_site(tmp_path / "relay-a", smarthost=sink.port, languages=("fr",)))
    add_recipients(site, now,
                   {"who": "Fatou Ba", "profile": "postal", "language": "fr",
                    "postal_address": "Quartier Médina; BP 45; Dakar", "country": "SN"},
                   {"who": "Moussa Traoré", "profile": "postal", "language": "fr",
                    "postal_address": "BP 12; Kayes", "country": "ML"},
                   {"who": "Aïcha Koné", "profile": "postal", "language": "fr",
                    "postal_address": "Rue 3; Ségou", "country": "ML"},
                   {"who": "John Mensah", "profile": "postal", "language": "en",
                    "postal_address": "PO Box 9; Tamale", "country": "GH"})
    return site


def translated_and_dispatched(site: Site, now, payload=None) -> dict:
    publication = receive(site, payload or whatsnew_payload(), now)
    with site.db.atomic():
        translation.prepare_received(site.db, site, now)
    if payload is None:
        site.write_now(sheets.submit_file, site, 1, FRENCH, "cli:test", now)
    with site.db.atomic():
        translation.expire_due(site.db, site, now + timedelta(days=3))
        dispatch.dispatch_ready(site.db, site, now + timedelta(days=3))
    return publication


def pdf_text(path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(str(path)).pages)


def test_a_batch_per_language_holds_the_translated_master_labels_and_manifest(relay, now):
    translated_and_dispatched(relay, now)
    assert [b["id"] for b in postal.list_batches(relay.db)] == ["whatsnew-17-en",
                                                                "whatsnew-17-fr"]
    assert postal.build_pending(relay, now) == 2
    folder = relay.data / "postal" / "whatsnew-17-fr"
    assert sorted(p.name for p in folder.iterdir()) == ["labels.pdf", "manifest.csv",
                                                        "master.pdf"]
    master = pdf_text(folder / "master.pdf")
    assert "Quoi de neuf n° 17" in master
    assert "Un nouveau puits à Kayes" in master
    assert "Le village a creusé un puits, ensemble." in master
    assert "Régions et lieux" in master and "Semences paysannes" in master
    assert "The village" not in master
    assert PdfReader(str(folder / "master.pdf")).pages[0].mediabox.width == pytest.approx(
        595.28, abs=0.5)  # A4
    labels = pdf_text(folder / "labels.pdf")
    assert labels.index("Aïcha Koné") < labels.index("Moussa Traoré") < labels.index("Fatou Ba")
    assert "Quartier Médina" in labels and "John Mensah" not in labels
    rows = [r for r in csv.DictReader(io.StringIO((folder / "manifest.csv").read_text("utf-8")))
            if r["kind"] == "label"]
    assert [(r["country"], r["name"]) for r in rows] == [
        ("ML", "Aïcha Koné"), ("ML", "Moussa Traoré"), ("SN", "Fatou Ba")]
    assert rows[2]["postal_address"] == "Quartier Médina / BP 45 / Dakar"
    (batch,) = [b for b in postal.list_batches(relay.db) if b["id"] == "whatsnew-17-fr"]
    assert batch["status"] == "ready" and batch["countries"] == {"ML": 2, "SN": 1}


def test_the_english_reader_gets_the_original_unmarked(relay, now):
    translated_and_dispatched(relay, now)
    postal.build_pending(relay, now)
    master = pdf_text(relay.data / "postal" / "whatsnew-17-en" / "master.pdf")
    assert "What's New no. 17" in master and "[en]" not in master


def test_an_untranslated_text_is_printed_in_the_original_and_marked(relay, now):
    translated_and_dispatched(relay, now, whatsnew_payload())
    postal.build_pending(relay, now)
    master = pdf_text(relay.data / "postal" / "whatsnew-17-fr" / "master.pdf")
    assert "[en] A new well in Kayes" in master
    assert "Les textes marqués [en] sont dans leur langue d'origine" in master


def test_text_in_scripts_the_font_lacks_does_not_stop_the_batch(relay, now):
    payload = whatsnew_payload()
    payload["sections"][0]["items"][2]["text"] = "Вода для школ. المياه للمدارس. 学校的水。"
    translated_and_dispatched(relay, now, payload)
    assert postal.build_pending(relay, now) == 2
    master = pdf_text(relay.data / "postal" / "whatsnew-17-en" / "master.pdf")
    assert "Вода для школ." in master  # Cyrillic is in the font


def test_a_batch_left_half_written_by_a_crash_is_built_again_whole(relay, now):
    translated_and_dispatched(relay, now)
    folder = relay.data / "postal" / "whatsnew-17-fr"
    half = folder.with_name(".whatsnew-17-fr.tmp")
    half.mkdir(parents=True)
    (half / "master.pdf").write_bytes(b"%PDF-1.4 truncated")
    folder.mkdir()
    (folder / "labels.pdf").write_bytes(b"")
    assert postal.build_pending(relay, now) == 2
    assert not half.exists()
    assert "Moussa Traoré" in pdf_text(folder / "labels.pdf")
    rows = (folder / "manifest.csv").read_text("utf-8").splitlines()
    assert len([r for r in rows if r.startswith("label,")]) == 3  # three readers, none twice
    assert postal.build_pending(relay, now) == 0


def test_who_is_in_a_batch_is_fixed_when_the_publication_is_dispatched(relay, now):
    translated_and_dispatched(relay, now)
    add_recipients(relay, now, {"who": "Late Comer", "profile": "postal", "language": "fr",
                                "postal_address": "Somewhere", "country": "ML"})
    with relay.db.atomic():
        relay.db.execute("DELETE FROM relay_recipients WHERE name = 'Fatou Ba'")
    postal.build_pending(relay, now)
    labels = pdf_text(relay.data / "postal" / "whatsnew-17-fr" / "labels.pdf")
    assert "Fatou Ba" in labels and "Late Comer" not in labels


def test_postal_addresses_never_leave_the_relay(relay, now):
    translated_and_dispatched(relay, now)
    for (raw,) in relay.db.execute("SELECT raw FROM bodies"):
        assert b"BP 12" not in raw and b"BP 45" not in raw and b"PO Box 9" not in raw
        assert b"Quartier" not in raw


def test_the_operator_lists_shows_and_marks_a_batch_sent_once(relay, now):
    translated_and_dispatched(relay, now)
    postal.build_pending(relay, now)
    listing = listserv("postal", "list", site=relay.folder).stdout
    assert "whatsnew-17-fr" in listing and "ML 2, SN 1" in listing
    shown = listserv("postal", "show", "whatsnew-17-fr", site=relay.folder).stdout
    assert "master.pdf" in shown and "ML: 2" in shown
    listserv("postal", "mark-sent", "whatsnew-17-fr", site=relay.folder)
    again = listserv("postal", "mark-sent", "whatsnew-17-fr", site=relay.folder, check=False)
    assert again.returncode == 1 and "already marked sent" in again.stderr
    data = json.loads(listserv("postal", "list", "--json", site=relay.folder).stdout)
    assert {b["id"]: b["status"] for b in data} == {"whatsnew-17-fr": "sent",
                                                     "whatsnew-17-en": "ready"}
    missing = listserv("postal", "show", "nope", site=relay.folder, check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def with_centre(site: Site) -> Site:
    with open(site.folder / "listserv.toml", "a", encoding="utf-8") as config:
        config.write('postal_return_address = "Centre régional ENDA; BP 3370; Dakar"\n'
                     'postal_country = "SN"\n')
    return Site(site.folder)


def test_labels_follow_upu_s42_country_in_capitals_in_the_centres_language(relay, now):
    relay = with_centre(relay)
    translated_and_dispatched(relay, now)
    postal.build_pending(relay, now)
    labels = pdf_text(relay.data / "postal" / "whatsnew-17-fr" / "labels.pdf")
    lines = [line.strip() for line in labels.splitlines()]
    assert lines.count("MALI") == 2  # international: the country, in capitals, last
    assert lines[lines.index("Kayes") + 1] == "MALI"
    assert "SÉNÉGAL" not in lines and "ML" not in lines and "SN" not in lines  # domestic
    assert labels.count("Centre régional ENDA, BP 3370, Dakar") == 3  # the return address
    english = pdf_text(relay.data / "postal" / "whatsnew-17-en" / "labels.pdf")
    assert "GHANA" in english.splitlines()


def test_a_label_that_does_not_fit_is_reported_never_cut_silently(relay, now):
    add_recipients(relay, now, {
        "who": "Mamadou", "profile": "postal", "language": "fr", "country": "ML",
        "postal_address": "Coopérative des femmes maraîchères et transformatrices de "
                          "produits locaux du cercle de Kayes; BP 7; Kayes"})
    translated_and_dispatched(relay, now)
    postal.build_pending(relay, now)
    (batch,) = [b for b in postal.list_batches(relay.db) if b["id"] == "whatsnew-17-fr"]
    (problem,) = batch["problems"]
    assert problem["name"] == "Mamadou" and "too wide" in problem["problem"]
    labels = pdf_text(relay.data / "postal" / "whatsnew-17-fr" / "labels.pdf")
    assert "produits locaux du cercle de Kayes" in labels  # printed whole, not cut
    manifest = (relay.data / "postal" / "whatsnew-17-fr" / "manifest.csv").read_text("utf-8")
    (row,) = [r for r in csv.DictReader(io.StringIO(manifest)) if r["name"] == "Mamadou"]
    assert "too wide" in row["problem"]
    shown = listserv("postal", "show", "whatsnew-17-fr", site=relay.folder).stdout
    assert "1 label(s) do not fit" in listserv("postal", "show", "whatsnew-17-fr",
                                               site=relay.folder).stderr
    assert "Mamadou: line 2 is too wide" in shown
    refused = listserv("recipient", "add", "Awa", "--profile", "postal", "--country", "ML",
                       "--postal-address", "a; b; c; d; e; f", site=relay.folder, check=False)
    assert refused.returncode == 1 and "a label holds 5" in refused.stderr


def test_the_manifest_gives_a_subtotal_per_country_and_the_total(relay, now):
    translated_and_dispatched(relay, now)
    postal.build_pending(relay, now)
    manifest = (relay.data / "postal" / "whatsnew-17-fr" / "manifest.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(manifest)))
    assert [(r["kind"], r["country"], r["copies"]) for r in rows if r["kind"] != "label"] == [
        ("subtotal", "ML", "2"), ("subtotal", "SN", "1"), ("total", "", "3")]


def test_marking_a_batch_sent_tells_the_hub_it_was_posted(relay, now):
    translated_and_dispatched(relay, now)
    postal.build_pending(relay, now)
    listserv("postal", "mark-sent", "whatsnew-17-fr", site=relay.folder)
    ((to, raw),) = outgoing(relay, "relay-ack:whatsnew:17:posted:%")
    assert to == f"relay@{HUB_DOMAIN}"
    (part,) = [p for p in email.message_from_bytes(raw).walk()
               if p.get_content_type() == "application/json"]
    data = json.loads(part.get_payload(decode=True))
    body = data["envelope"]["body"]
    assert (body["stage"], body["counts"]["batch"], body["counts"]["recipients"]) == \
        ("posted", "whatsnew-17-fr", 3)
