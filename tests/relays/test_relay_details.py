"""The smaller points: one segment is one segment; region names come in the
reader's language where the translation memory has them; refused federation
mail is listed with its reason in `listserv relay status`."""

from __future__ import annotations

from datetime import timedelta

from helpers import listserv
from relaykit import (
    HUB_DOMAIN,
    SECRET,
    add_recipients,
    body_text,
    outgoing,
    parse,
    receive,
    run_pipeline,
    whatsnew_payload,
    write_relay_site,
)

from listserv.site.folder import Site
from relays import dispatch, hub, translation


def test_a_sheet_of_one_segment_says_so_in_the_singular(tmp_path, now):
    relay = Site(write_relay_site(tmp_path / "relay-a"))
    add_recipients(relay, now, {"who": "ana@example.org", "profile": "lowband", "language": "fr"})
    payload = whatsnew_payload()
    payload["sections"][0]["items"] = payload["sections"][0]["items"][1:2]  # French already
    payload["sections"][0]["subheading"] = ""
    receive(relay, payload, now)
    with relay.db.atomic():
        translation.prepare_received(relay.db, relay, now)
    ((_, raw),) = outgoing(relay, "translation-sheet:%")
    text = body_text(parse(raw))
    assert "le segment numéroté ci-dessous" in text and "les 1 segments" not in text


def test_region_names_come_from_the_memory_in_the_readers_language(tmp_path, now):
    relay = Site(write_relay_site(tmp_path / "relay-a", languages=("pt",),
                                  translators={"pt": "tr@example.org"}))
    add_recipients(relay, now, {"who": "rui@example.org", "profile": "lowband", "language": "pt"})
    with relay.db.atomic():
        translation.remember(relay.db, "en", "pt", "Niger", "Níger", now)
    receive(relay, whatsnew_payload(), now)
    later = now + timedelta(days=3, minutes=1)
    with relay.db.atomic():
        translation.prepare_received(relay.db, relay, now)
        translation.expire_due(relay.db, relay, later)
        while dispatch.dispatch_ready(relay.db, relay, later):
            pass
    text = "".join(body_text(parse(raw)) for _, raw in outgoing(relay, "relay-lowband:%"))
    assert "(Níger)" in text and "(Niger)" not in text


def test_refused_federation_mail_is_listed_with_its_reason_in_relay_status(site, tmp_path,
                                                                           now):
    (tmp_path / "a.key").write_text(SECRET + "\n")
    with site.db.atomic():
        hub.add_relay(site.db, "relay-a", address="relay@relay-a.example.org",
                      secret_file=tmp_path / "a.key", now=now)
    stranger = Site(write_relay_site(tmp_path / "relay-a", secret="f" * 48))
    receive(stranger, whatsnew_payload(), now)  # acknowledged with the wrong secret
    ((_, ack),) = outgoing(stranger, "relay-ack:%")
    run_pipeline(site, ack, now, [f"relay@{HUB_DOMAIN}"], "listserv-bounces@relay-a.example.org")
    run_pipeline(site, "From: x@example.net\nTo: relay@lists.example.org\nSubject: hi\n"
                       "Message-ID: <x1@example.net>\n\nhello\n", now,
                 [f"relay@{HUB_DOMAIN}"], "x@example.net")
    text = listserv("relay", "status", site=site.folder).stdout
    assert "refused" in text and "bad signature" in text
    assert "Federation mail refused from no known relay:" in listserv(
        "relay", "status", site=site.folder).stderr
    assert "x@example.net" in text and "unsigned" in text
