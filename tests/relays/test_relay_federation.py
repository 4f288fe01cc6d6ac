"""Federation messages through a relay's real pipeline: admitted once when
signed by its hub, refused (logged, shown in `status`, never acted on) when
unsigned, tampered with, forged, replayed, looping, stale or from a stranger."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from helpers import listserv
from relaykit import HUB_DOMAIN, SECRET, signed_publication, whatsnew_payload, write_relay_site

from listserv.intake.pipeline import Extensions, process_received
from listserv.intake.smtp import store_incoming
from listserv.mail.compose import to_bytes
from listserv.site.folder import Site
from relays.federation import canonical
from relays.serving import relay_extensions

HUB_NODE = HUB_DOMAIN


@pytest.fixture
def relay(tmp_path, sink) -> Site:
    return Site(write_relay_site(tmp_path / "relay-a", smarthost=sink.port))


def publication_mail(now, secret: str = SECRET, *, sender: str = HUB_NODE, to: str = "relay-a",
                     trace=(), number: int = 17, at=None) -> bytes:
    return signed_publication(now, whatsnew_payload(number), to=to, secret=secret,
                              sender=sender, trace=trace, at=at)


def deliver(site: Site, raw: bytes, now, rcpt: str = "relay@relay-a.example.org") -> None:
    """Through the real pipeline, as `listserv serve` would after intake."""
    extensions = relay_extensions(site, Extensions())
    with site.db.atomic():
        store_incoming(site.db, raw, f"listserv-bounces@{HUB_DOMAIN}", [rcpt], now)
    with site.db.atomic():
        process_received(site.db, site, now, 20, extensions)


def publications(site: Site) -> list[str]:
    return [row[0] for row in site.db.execute("SELECT key FROM relay_publications")]


def refusals(site: Site) -> list[str]:
    return [row[0] for row in site.db.execute("SELECT reason FROM federation_refusals")]


def test_canonical_json_sorts_keys_drops_spaces_and_keeps_utf8():
    assert canonical({"b": 1, "a": ["é", {"d": None, "c": True}]}) == \
        '{"a":["é",{"c":true,"d":null}],"b":1}'.encode("utf-8")
    with pytest.raises(ValueError):
        canonical({"a": 1.5})


def test_a_publication_signed_by_the_hub_is_kept_once_and_acknowledged(relay, now):
    deliver(relay, publication_mail(now), now)
    assert publications(relay) == ["whatsnew:17"]
    assert refusals(relay) == []
    (ack,) = relay.db.execute("SELECT recipient FROM deliveries WHERE ref = "
                              "'relay-ack:whatsnew:17:received'").fetchall()
    assert ack[0] == f"relay@{HUB_DOMAIN}"


def test_an_unsigned_message_is_refused_and_shown_in_status(relay, now):
    plain = (f"From: relay@{HUB_DOMAIN}\r\nTo: relay@relay-a.example.org\r\n"
             f"Subject: publication\r\nMessage-ID: <x1@example.org>\r\n\r\nPlease publish.\r\n")
    deliver(relay, plain.encode(), now)
    assert publications(relay) == []
    assert refusals(relay) == ["unsigned: no federation (application/json) part"]
    at = now.isoformat()
    status = listserv("status", "--at", at, site=relay.folder, check=False).stdout
    assert "Federation messages refused in the last 7 days: 1" in status
    assert "unsigned: no federation (application/json) part" in status
    data = json.loads(listserv("status", "--json", "--at", at, site=relay.folder,
                               check=False).stdout)
    assert data["federation"]["refused"][0]["reason"].startswith("unsigned")
    assert data["federation"]["refused_last_7_days"] == 1
    # A week and a day later the refusal is no longer recent, but still listed.
    later = (now + timedelta(days=8)).isoformat()
    data = json.loads(listserv("status", "--json", "--at", later, site=relay.folder,
                               check=False).stdout)
    assert data["federation"]["refused_last_7_days"] == 0
    assert data["federation"]["refused"][0]["reason"].startswith("unsigned")


def test_a_message_tampered_with_after_signing_is_refused(relay, now):
    raw = publication_mail(now)
    # Change the JSON part's text (base64) as a relay on the way could: re-encode it.
    import base64
    import email
    message = email.message_from_bytes(raw)
    part = [p for p in message.walk() if p.get_content_type() == "application/json"][0]
    data = json.loads(part.get_payload(decode=True))
    data["envelope"]["body"]["publication"]["title"] = "What's New (edited)"
    part.set_payload(base64.encodebytes(json.dumps(data).encode()).decode())
    deliver(relay, to_bytes(message), now)
    assert publications(relay) == []
    assert refusals(relay) == ["bad signature: tampered with, or not signed with a current "
                               "secret"]


def test_a_message_forged_with_another_secret_is_refused(relay, now):
    deliver(relay, publication_mail(now, secret="an attacker's guess at the secret"), now)
    assert publications(relay) == []
    assert refusals(relay)[0].startswith("bad signature")


def test_the_same_message_replayed_is_refused_and_nothing_is_done_twice(relay, now):
    raw = publication_mail(now)
    deliver(relay, raw, now)
    deliver(relay, raw, now + timedelta(minutes=5))
    assert publications(relay) == ["whatsnew:17"]
    (reason,) = refusals(relay)
    assert reason.startswith("replayed: message ")
    acks = relay.db.execute("SELECT count(*) FROM deliveries WHERE ref LIKE 'relay-ack:%'")
    assert acks.fetchone()[0] == 1


def test_a_message_from_a_node_that_is_not_the_hub_is_refused(relay, now):
    deliver(relay, publication_mail(now, sender="relay-b"), now)
    assert publications(relay) == []
    assert refusals(relay) == ["unknown node 'relay-b'"]


def test_a_message_for_another_node_is_refused(relay, now):
    deliver(relay, publication_mail(now, to="relay-b"), now)
    assert refusals(relay) == ["addressed to node 'relay-b', not to this node 'relay-a'"]


def test_a_message_whose_trace_already_holds_this_node_is_refused_as_a_loop(relay, now):
    deliver(relay, publication_mail(now, trace=["relay-a"]), now)
    assert publications(relay) == []
    assert refusals(relay)[0].startswith("loop: this node 'relay-a' is already in the trace")


def test_a_stale_message_is_refused(relay, now):
    deliver(relay, publication_mail(now, at=now - timedelta(days=40)), now)
    assert publications(relay) == []
    assert refusals(relay)[0].startswith("stale: sent at")


def test_during_a_rotation_both_secrets_verify_and_afterwards_the_old_one_does_not(relay, now):
    new = "9d1e7a3c5b2f4e6a8c0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f"
    (relay.folder / "relay.key").write_text(f"{SECRET}\n{new}\n")
    deliver(relay, publication_mail(now, secret=SECRET, number=17), now)
    deliver(relay, publication_mail(now, secret=new, number=18), now)
    (relay.folder / "relay.key").write_text(f"{new}\n")
    deliver(relay, publication_mail(now, secret=SECRET, number=19), now)
    assert publications(relay) == ["whatsnew:17", "whatsnew:18"]
    assert refusals(relay)[0].startswith("bad signature")


def test_a_refused_message_is_never_answered(relay, now, sink):
    from listserv.delivery.engine import deliver_pending
    deliver(relay, publication_mail(now, secret="wrong secret, long enough"), now)
    deliver_pending(relay, now)
    assert sink.caught == []
