"""Readers manage themselves by email at a relay: `set language`, `set budget`
and `unsubscribe` (confirmed by a reply, so a forged From removes nobody),
answered in the reader's language; and a confirmed whatsnew-join@ at a relay
makes a lowband recipient who then gets the bulletin."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
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
from relays import dispatch, translation

COMMANDS = "listserv@relay-a.example.org"


@pytest.fixture
def relay(tmp_path, sink, now) -> Site:
    site = Site(write_relay_site(tmp_path / "relay-a", smarthost=sink.port,
                                 languages=("fr", "pt")))
    add_recipients(site, now, {"who": "ana@example.org", "profile": "lowband", "language": "fr",
                               "budget": 5000})
    return site


def send(site: Site, now, sender: str, body: str, subject: str = "", to: str = COMMANDS,
         message_id: str = "<c1@mail.gmail.com>") -> None:
    """A command mail as Gmail writes it: plain text, CRLF, a signature."""
    raw = (f"From: Ana Lima <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
           f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=\"UTF-8\"\r\n\r\n{body}\r\n\r\n-- \r\nAna\r\n")
    run_pipeline(site, raw, now, [to], sender)
    deliver_pending(site, now)


def reader(site: Site, address: str = "ana@example.org"):
    rows = list(site.db.query("SELECT * FROM relay_recipients WHERE address = ?", [address]))
    return rows[0] if rows else None


def test_set_language_and_budget_apply_at_once_and_are_answered_in_the_new_language(
        relay, sink, now):
    send(relay, now, "ana@example.org", "set language pt\r\nset budget 3000")
    assert (reader(relay)["language"], reader(relay)["budget"]) == ("pt", 3000)
    (answer,) = sink.wait_for_recipient("ana@example.org")
    assert str(answer["Subject"]).strip().startswith("Os seus comandos")
    text = body_text(answer)
    assert "Feito: as suas cópias chegam agora em «pt»." in text
    assert "no máximo 3000 bytes" in text


def test_a_budget_too_small_or_a_language_not_served_changes_nothing(relay, sink, now):
    send(relay, now, "ana@example.org", "set budget 200\r\nset language de")
    assert (reader(relay)["language"], reader(relay)["budget"]) == ("fr", 5000)
    text = body_text(sink.wait_for_recipient("ana@example.org")[0])
    assert "« 200 » n'est pas une taille possible" in text
    assert "« de » n'est pas une langue d'ici" in text


def test_unsubscribe_is_confirmed_by_a_reply_and_a_forged_confirmation_removes_nobody(
        relay, sink, now):
    send(relay, now, "ana@example.org", "", subject="désabonner")
    (request,) = sink.wait_for_recipient("ana@example.org")
    assert str(request["Subject"]).strip().startswith("Merci de confirmer")
    confirm = request["Reply-To"]
    assert re.fullmatch(r"listserv\+[0-9a-f]{32}@relay-a\.example\.org", confirm)
    assert reader(relay) is not None

    later = now + timedelta(minutes=3)
    send(relay, later, "mallory@example.net", "yes", subject="Re: confirm", to=confirm,
         message_id="<forged@example.net>")
    assert reader(relay) is not None
    (refused,) = sink.wait_for_recipient("mallory@example.net")
    assert "must come from the address" in body_text(refused)

    send(relay, later, "ana@example.org", "> Quelqu'un a demandé...", subject="Re: " +
         str(request["Subject"]), to=confirm, message_id="<c2@mail.gmail.com>")
    assert reader(relay) is None
    done = sink.wait_for_recipient("ana@example.org", count=2)[1]
    assert "ne reçoit plus les publications" in body_text(done)


def test_someone_who_is_not_a_reader_is_told_how_to_start(relay, sink, now):
    send(relay, now, "zoe@example.org", "unsubscribe")
    text = body_text(sink.wait_for_recipient("zoe@example.org")[0])
    assert "whatsnew-join@relay-a.example.org" in text
    assert reader(relay, "zoe@example.org") is None


def test_a_whatsnew_join_confirmed_at_a_relay_makes_a_reader_who_gets_the_bulletin(
        relay, sink, now):
    send(relay, now, "rui@example.org", "subscribe lang=pt", subject="",
         to="whatsnew-join@relay-a.example.org", message_id="<j1@example.org>")
    (request,) = sink.wait_for_recipient("rui@example.org")
    confirm = request["Reply-To"]
    assert confirm.startswith("whatsnew-confirm+")
    send(relay, now, "rui@example.org", "ok", subject="Re: confirm", to=confirm,
         message_id="<j2@example.org>")
    row = reader(relay, "rui@example.org")
    assert row is not None and (row["profile"], row["language"]) == ("lowband", "pt")

    receive(relay, whatsnew_payload(), now)
    later = now + timedelta(days=3, minutes=1)
    with relay.db.atomic():
        translation.prepare_received(relay.db, relay, now)
        translation.expire_due(relay.db, relay, later)
        while dispatch.dispatch_ready(relay.db, relay, later):
            pass
    deliver_pending(relay, later)
    copies = [m for m in sink.messages_to("rui@example.org") if "Novidades" in m["Subject"]
              or "What's New" in m["Subject"]]
    assert copies and copies[0]["To"] == "rui@example.org"
