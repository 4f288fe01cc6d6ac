"""Upstream replies are the ally's: a relay reader's reply to a hub forum whose
digest the relay carries is a member's post at the hub (members by relay);
anyone else's is held, and the hold names the relay it came through; the
reply's language is declared (or detected) so that relays do not send it to
be translated into the language it is already in."""

from __future__ import annotations

import quopri
from datetime import timedelta

import pytest
from relaykit import HUB_DOMAIN, SECRET, add_recipients, receive, run_pipeline, write_relay_site

from listserv.site import forums
from listserv.site.folder import Site
from relays import hub, translation

FRENCH_REPLY = ("Merci pour ce message. Nous sommes tout à fait d'accord avec la "
                "proposition et nous viendrons à la rencontre de samedi avec nos voisins.")


@pytest.fixture
def hub_site(site, tmp_path, now) -> Site:
    (tmp_path / "a.key").write_text(SECRET + "\n")
    with site.db.atomic():
        forums.create(site.db, "peace", title="Peace", path="thematic", now=now,
                      facilitators=("fac@example.org",))
        hub.add_relay(site.db, "relay-a", address="relay@relay-a.example.org",
                      secret_file=tmp_path / "a.key", now=now, digests=["peace"])
    return site


@pytest.fixture
def relay(tmp_path, sink, now) -> Site:
    site = Site(write_relay_site(tmp_path / "relay-a", smarthost=sink.port))
    add_recipients(site, now, {"who": "ana@example.org", "profile": "lowband", "language": "fr"})
    return site


def outlook_reply(sender: str, text: str, message_id: str) -> str:
    """A reply as Outlook writes it: quoted-printable, CRLF, no Content-Language."""
    encoded = quopri.encodestring(text.encode("utf-8")).decode("ascii")
    return (f"From: Ana Diallo <{sender}>\r\nTo: reply+peace@relay-a.example.org\r\n"
            f"Subject: RE: Rencontre samedi\r\nMessage-ID: {message_id}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{encoded}\r\n")


def pass_up_and_inject(hub_site: Site, relay: Site, raw: str, sender: str, now) -> None:
    before = {r[0] for r in relay.db.execute("SELECT ref FROM deliveries")}
    run_pipeline(relay, raw, now, ["reply+peace@relay-a.example.org"], sender)
    (up,) = [raw for ref, raw in ((r, b) for r, b in relay.db.execute(
        "SELECT d.ref, b.raw FROM deliveries d JOIN bodies b ON b.id = d.body_id "
        "WHERE d.ref LIKE 'relay-upstream:%'")) if ref not in before]
    run_pipeline(hub_site, bytes(up), now, [f"relay@{HUB_DOMAIN}"])


def test_a_relay_readers_reply_is_a_members_post_and_declares_its_language(
        hub_site, relay, now):
    pass_up_and_inject(hub_site, relay, outlook_reply("ana@example.org", FRENCH_REPLY,
                                                      "<r1@outlook.com>"), "ana@example.org", now)
    (post,) = hub_site.db.execute("SELECT sender, status FROM posts").fetchall()
    assert post == ("ana@example.org", "approved")
    (raw,) = hub_site.db.execute("SELECT raw FROM messages WHERE mail_from = "
                                 "'ana@example.org'").fetchone()
    assert b"Content-Language: fr\r\n" in bytes(raw)


def test_a_strangers_reply_through_a_relay_is_held_and_the_notice_names_the_relay(
        hub_site, relay, now):
    pass_up_and_inject(hub_site, relay, outlook_reply("zoe@example.net", FRENCH_REPLY,
                                                      "<r2@outlook.com>"), "zoe@example.net", now)
    (status, reason) = hub_site.db.execute("SELECT status, reason FROM posts").fetchone()
    assert status == "hold"
    assert "came through the relay relay-a" in reason
    assert "not one of its readers" in reason


def test_a_forged_relay_header_from_outside_makes_nobody_a_member(hub_site, now):
    raw = ("From: ana@example.org\r\nTo: peace@lists.example.org\r\nSubject: Hi\r\n"
           "X-Listserv-Relay: relay-a\r\nMessage-ID: <f1@example.org>\r\n\r\n"
           + FRENCH_REPLY + "\r\n")
    run_pipeline(hub_site, raw, now, ["peace@lists.example.org"], "ana@example.org")
    (status, reason) = hub_site.db.execute("SELECT status, reason FROM posts").fetchone()
    assert status == "hold" and "relay" not in reason


def test_a_french_item_in_an_english_digest_is_not_sent_to_be_translated_into_french(
        relay, now):
    digest = {"key": "digest:peace:4", "kind": "digest", "number": 4, "language": "en",
              "title": "Peace digest 4", "forum": "peace",
              "sections": [{"heading": "Peace", "subheading": "", "items": [
                  {"ref": "POST-3", "title": "RE: Rencontre samedi", "author": "Ana",
                   "text": FRENCH_REPLY, "language": "en"}]}], "text": "", "html": ""}
    publication = receive(relay, digest, now)
    with relay.db.atomic():
        translation.prepare_received(relay.db, relay, now + timedelta(seconds=1))
    (status,) = relay.db.execute(
        "SELECT status FROM translation_segments WHERE publication_id = ? AND path = "
        "'sections.0.items.0.text'", [publication["id"]]).fetchone()
    assert status == "same"
