"""Federation mail is DKIM-signed like the rest: a hub and a relay, each its own
`listserv serve`, send everything to the sink, which stands for the network
between them. What the hub sends a relay (a publication) and what the relay
sends its hub (the acknowledgement, an ally's reply passed up) is caught
there, verified with dkimpy against the records `listserv dkim show` prints,
served by a DNS server on loopback, and only then handed on to its node as
it was caught, so the signed bytes are the ones each node acts on.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone

from helpers import Server, dkim_verifies, listserv, running_dns, send_mail
from relaykit import (
    HUB_DOMAIN,
    insert_publication,
    make_hub,
    make_relay,
    query,
    wait_until,
    whatsnew_payload,
)

from listserv.site.folder import Site
from relays.hub import add_relay

RELAY_ADDRESS = "relay@relay-a.example.org"
HUB_ADDRESS = f"relay@{HUB_DOMAIN}"


def published(*folders) -> dict:
    """The TXT records each site's `listserv dkim show --json` says to publish."""
    records = {}
    for folder in folders:
        for row in json.loads(listserv("dkim", "show", "--json", site=folder).stdout):
            records[row["name"]] = [row["value"]]
    return records


def with_ed25519(folder) -> None:
    """Turn on the Ed25519 signature beside the RSA one (init made its key)."""
    config = folder / "listserv.toml"
    config.write_text(config.read_text().replace('ed25519_selector = ""',
                                                 'ed25519_selector = "ed2026"', 1))


def federation(sink, to: str, kind: str) -> list:
    """Caught federation messages of `kind` to `to`."""
    return [c for c in sink.caught if to in c.rcpt_tos
            and str(c.message.get("X-Listserv-Federation", "")).startswith(kind + " ")]


def test_federation_mail_both_ways_verifies_against_the_published_keys(tmp_path, sink):
    everyone = {"*": f"127.0.0.1:{sink.port}"}
    hub = make_hub(tmp_path, routes=everyone)
    relay = make_relay(tmp_path, "relay-a", languages=["fr"], routes=everyone)
    with_ed25519(relay)
    now = datetime.now(timezone.utc)
    Site(hub).write_now(lambda db: add_relay(db, "relay-a", address=RELAY_ADDRESS,
                                             secret_file=tmp_path / "relay-a.key", now=now))
    shutil.copyfile(tmp_path / "relay-a.key", relay / "relay.key")
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--no-charter", site=hub)
    payload = whatsnew_payload(17)
    payload["title"] = "What's New no. 17 — Ségou, Thiès"  # an encoded Subject
    payload["text"] = "Semences paysannes à Ségou. " * 60  # one long line of 8-bit text
    insert_publication(hub, payload, now)
    records = published(hub, relay)
    assert any(name.endswith("._domainkey.relay-a.example.org") for name in records)
    hub_server, relay_server = Server(hub).start(), Server(relay).start()
    try:
        with running_dns(records) as (_zone, nameserver):
            # Hub -> relay: the publication.
            sink.wait_for(lambda s: federation(s, RELAY_ADDRESS, "publication"), 30,
                          "the hub's publication")
            (publication,) = federation(sink, RELAY_ADDRESS, "publication")
            assert dkim_verifies(publication.data, nameserver) == [True]
            send_mail(relay_server.port, publication.mail_from, [RELAY_ADDRESS],
                      publication.data)

            # Relay -> hub: its acknowledgement of what it was handed.
            sink.wait_for(lambda s: federation(s, HUB_ADDRESS, "ack"), 30,
                          "the relay's acknowledgement")
            ack = federation(sink, HUB_ADDRESS, "ack")[0]
            assert dkim_verifies(ack.data, nameserver) == [True, True]  # Ed25519, RSA
            send_mail(hub_server.port, ack.mail_from, [HUB_ADDRESS], ack.data)
            wait_until(lambda: query(hub, "SELECT received_at FROM relay_sends")[0][0],
                       what="the hub to record the acknowledgement")

            # Relay -> hub: an ally's reply to a hub forum, passed up.
            send_mail(relay_server.port, "ana@example.org", ["reply+peace@relay-a.example.org"],
                      "From: Ana Diallo <ana@example.org>\nTo: reply+peace@relay-a.example.org"
                      "\nSubject: Re: Rencontre à Thiès\nMessage-ID: <p1@example.org>\n\n"
                      "Merci, nous viendrons tous à la rencontre de samedi.\n")
            sink.wait_for(lambda s: federation(s, HUB_ADDRESS, "upstream"), 30,
                          "the reply passed up")
            (upstream,) = federation(sink, HUB_ADDRESS, "upstream")
            assert dkim_verifies(upstream.data, nameserver) == [True, True]
            send_mail(hub_server.port, upstream.mail_from, [HUB_ADDRESS], upstream.data)
            wait_until(lambda: query(hub, "SELECT count(*) FROM relay_injected")[0][0] == 1,
                       what="the hub to take the reply in")

            # Each signature is the sender's own domain's (DMARC alignment).
            assert f"d={HUB_DOMAIN};" in publication.message["DKIM-Signature"].replace(" ", "")
            assert "d=relay-a.example.org;" in ack.message["DKIM-Signature"].replace(" ", "")
            tampered = upstream.data.replace(b"Subject: [federation]", b"Subject: [forged]")
            assert tampered != upstream.data
            assert dkim_verifies(tampered, nameserver) == [False, False]
    finally:
        for server in (hub_server, relay_server):
            output = server.stop()
            assert "Traceback" not in output, output
