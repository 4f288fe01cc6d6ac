"""A hub and two relays, each its own `listserv serve` with its own site folder,
talking SMTP to each other on loopback through `[delivery] routes`; the
sink stands for everyone else (allies, translators, readers).

An initiative reported at relay A reaches the hub's What's New; the issue
reaches both relays; A's translator answers the sheet and A's readers get
the French text (lowband under budget with working `get`, a postal batch
whose PDF holds the translation); B passes its deadline and sends the
original, marked; the hub sees every acknowledgement; forged, tampered
and replayed federation messages are refused.
"""

from __future__ import annotations

import base64
import email
import json
import re
import shutil
import time
from datetime import datetime, timezone

import pytest
from helpers import Server, free_port, listserv, send_mail
from pypdf import PdfReader
from relaykit import HUB_DOMAIN, add_recipients, body_text, make_hub, make_relay, query, wait_until

from listserv.mail.compose import to_bytes
from listserv.site.folder import Site
from relays.hub import add_relay

FRENCH = {"A seed fair in Thiès": "Une foire aux semences à Thiès",
          "Forty farmers swapped seeds and tools at the market.":
              "Quarante paysans ont échangé semences et outils au marché."}
TRANSLATOR_A, TRANSLATOR_B = "traductrice@example.org", "tradutor@example.org"
BUDGET = 2500


@pytest.fixture
def nodes(tmp_path, sink):
    ports = {"hub": free_port(), "relay-a": free_port(), "relay-b": free_port()}
    everyone = f"127.0.0.1:{sink.port}"
    hub = make_hub(tmp_path, routes={"relay-a.example.org": f"127.0.0.1:{ports['relay-a']}",
                                     "relay-b.example.org": f"127.0.0.1:{ports['relay-b']}",
                                     "*": everyone})
    to_hub = {HUB_DOMAIN: f"127.0.0.1:{ports['hub']}", "*": everyone}
    relay_a = make_relay(tmp_path, "relay-a", languages=["fr"], deadline="1h",
                         translators={"fr": TRANSLATOR_A}, routes=to_hub, budget=BUDGET)
    relay_b = make_relay(tmp_path, "relay-b", languages=["pt"], deadline="4s",
                         translators={"pt": TRANSLATOR_B}, routes=to_hub)
    # The same calls `listserv relay add` and `listserv recipient add` make (their
    # command line is tested on its own), without a process each.
    hub_site, now = Site(hub), datetime.now(timezone.utc)
    for name, folder in (("relay-a", relay_a), ("relay-b", relay_b)):
        hub_site.write_now(lambda db: add_relay(db, name, address=f"relay@{name}.example.org",
                                                secret_file=tmp_path / f"{name}.key", now=now))
        shutil.copyfile(tmp_path / f"{name}.key", folder / "relay.key")
    add_recipients(Site(relay_a), now,
                   {"who": "ana@example.org", "profile": "lowband", "language": "fr",
                    "budget": BUDGET},
                   {"who": "Moussa Traoré", "profile": "postal", "language": "fr",
                    "postal_address": "BP 12; Kayes", "country": "ML"},
                   {"who": "Fatou Ba", "profile": "postal", "language": "fr",
                    "postal_address": "BP 45; Dakar", "country": "SN"})
    add_recipients(Site(relay_b), now, {"who": "rui@example.org", "profile": "lowband",
                                        "language": "pt"})
    servers = [Server(folder, port=ports[name]).start()
               for name, folder in (("hub", hub), ("relay-a", relay_a), ("relay-b", relay_b))]
    try:
        yield hub, relay_a, relay_b, ports
    finally:
        for server in servers:
            output = server.stop()
            assert "Traceback" not in output, output


def json_of(*args, site) -> list | dict:
    return json.loads(listserv(*args, "--json", site=site).stdout)


def answer_sheet(sheet, port: int) -> None:
    """The translator's reply: each numbered segment in French, the sheet quoted below."""
    text = body_text(sheet)
    lines = []
    for number, source in re.findall(r"^\[(\d+)\]\n> (.+)$", text, re.MULTILINE):
        french = FRENCH.get(source) or (f"Quoi de neuf n° {source.split()[-1]}"
                                        if source.startswith("What's New") else "=")
        lines.append(f"[{number}] {french}")
    quoted = "\n".join("> " + line for line in text.splitlines())
    reply_to = sheet["Reply-To"]
    send_mail(port, TRANSLATOR_A, [reply_to],
              f"From: {TRANSLATOR_A}\nTo: {reply_to}\nSubject: Re: {sheet['Subject']}\n"
              f"In-Reply-To: {sheet['Message-ID']}\n\n" + "\n".join(lines)
              + f"\n\nOn Monday, the relay wrote:\n{quoted}\n")


def test_an_initiative_from_relay_a_comes_back_translated_by_email_and_by_post(nodes, sink):
    hub, relay_a, relay_b, ports = nodes
    send_mail(ports["relay-a"], "awa@example.org", ["whatsnew@relay-a.example.org"],
              "From: Awa Diop <awa@example.org>\nTo: whatsnew@relay-a.example.org\n"
              "Subject: A seed fair in Thiès\nMessage-ID: <seed-1@example.org>\n\n"
              "Forty farmers swapped seeds and tools at the market.\n")

    # The hub records the report as Awa's, acknowledges it to her, and it is accepted.
    wait_until(lambda: json_of("initiative", "list", site=hub), what="the initiative at the hub")
    (initiative,) = json_of("initiative", "list", site=hub)
    assert initiative["reporter"] == "awa@example.org"
    sink.wait_for_recipient("awa@example.org")
    if initiative["status"] == "review":
        listserv("initiative", "accept", initiative["ref"], site=hub)
    (key,) = listserv("whatsnew", "publish", "--now", site=hub).stdout.split()

    # Both relays get the issue; each translator gets a sheet.
    (sheet_a,) = sink.wait_for_recipient(TRANSLATOR_A, timeout=30)
    sink.wait_for_recipient(TRANSLATOR_B, timeout=30)
    assert "A seed fair in Thiès" in body_text(sheet_a)
    answer_sheet(sheet_a, ports["relay-a"])
    thanks = sink.wait_for_recipient(TRANSLATOR_A, count=2)[1]
    assert "complète" in thanks["Subject"]

    # Relay A's lowband reader: French, under budget, with working references.
    copies = sink.wait_for_recipient("ana@example.org", timeout=30)
    time.sleep(1)
    copies = sink.messages_to("ana@example.org")
    text = "\n".join(body_text(m) for m in copies)
    assert "Une foire aux semences à Thiès" in text
    assert "Quarante paysans ont échangé semences et outils au marché." in text
    assert all(len(c.data) <= BUDGET for c in sink.caught if "ana@example.org" in c.rcpt_tos)
    assert all(m["To"] == "ana@example.org" and m.get_param("format") == "flowed"
               and "unsubscribe" in m["List-Unsubscribe"] for m in copies)
    ref = re.search(r"get (L\d+)", text).group(1)
    send_mail(ports["relay-a"], "ana@example.org", ["listserv@relay-a.example.org"],
              f"From: ana@example.org\nTo: listserv@relay-a.example.org\nSubject: get {ref}\n"
              f"Message-ID: <get-1@example.org>\n\n")
    sink.wait_for(lambda s: any(m["In-Reply-To"] == "<get-1@example.org>"
                                for m in s.messages_to("ana@example.org")), what="get answer")
    (answer,) = [m for m in sink.messages_to("ana@example.org")
                 if m["In-Reply-To"] == "<get-1@example.org>"]
    assert "Quarante paysans" in body_text(answer)

    # Relay A's postal batch: the master copy is the translation.
    wait_until(lambda: [b["status"] for b in json_of("postal", "list", site=relay_a)]
               == ["ready"], what="the postal batch")
    (batch,) = json_of("postal", "list", site=relay_a)
    master = "\n".join(p.extract_text() for p in
                       PdfReader(f"{batch['folder']}/master.pdf").pages)
    assert "Une foire aux semences à Thiès" in master
    assert "Quarante paysans ont échangé semences et outils au marché." in master
    assert batch["countries"] == {"ML": 1, "SN": 1}

    # Relay B passes its deadline and sends the original, marked untranslated.
    (copy_b,) = sink.wait_for_recipient("rui@example.org", timeout=30)
    text_b = body_text(copy_b)
    assert "[en] A seed fair in Thiès" in text_b
    assert "Os textos marcados [en] estão na língua original" in text_b

    # The hub sees every acknowledgement, with the counts per profile.
    def acknowledged() -> bool:
        report = json_of("relay", "status", site=hub)
        return all(r["dispatched"] == 1 for r in report)
    wait_until(acknowledged, what="the relays' acknowledgements")
    report = {r["id"]: r for r in json_of("relay", "status", site=hub)}
    (sent_a,) = report["relay-a"]["publications"]
    assert sent_a["key"] == key and sent_a["received_at"] and sent_a["translated_at"]
    assert sent_a["dispatched"]["profiles"]["lowband"]["recipients"] == 1
    assert sent_a["dispatched"]["profiles"]["postal"] == {"recipients": 2, "batches": 1,
                                                           "posted": 0}
    assert report["relay-b"]["publications"][0]["translated"]["languages"]["pt"]["original"] > 0

    # Posting relay A's batch is reported to the hub: by post, dispatched means posted.
    listserv("postal", "mark-sent", batch["id"], site=relay_a)
    wait_until(lambda: {r["id"]: r for r in json_of("relay", "status", site=hub)}["relay-a"][
        "publications"][0]["dispatched"]["profiles"]["postal"]["posted"] == 2,
        what="the hub told of the posting")

    # Forged, tampered and replayed federation messages are refused at relay A.
    (genuine,) = query(hub, "SELECT b.raw FROM deliveries d JOIN bodies b ON b.id = d.body_id "
                            "WHERE d.ref = ?", [f"relay:{key}:relay-a"])
    genuine = bytes(genuine[0])
    tampered = email.message_from_bytes(genuine)
    part = [p for p in tampered.walk() if p.get_content_type() == "application/json"][0]
    data = json.loads(part.get_payload(decode=True))
    data["envelope"]["id"] = "0" * 32
    data["envelope"]["body"]["publication"]["title"] = "Forged news"
    part.set_payload(base64.encodebytes(json.dumps(data).encode()).decode())
    forged = genuine.replace(b"application/json", b"text/plain")
    for raw in (genuine, to_bytes(tampered), forged):
        send_mail(ports["relay-a"], f"listserv-bounces@{HUB_DOMAIN}",
                  ["relay@relay-a.example.org"], raw)
    wait_until(lambda: len(json_of("status", site=relay_a)["federation"]["refused"]) == 3,
               what="three refusals")
    reasons = [r["reason"] for r in json_of("status", site=relay_a)["federation"]["refused"]]
    assert reasons[0].startswith("unsigned")
    assert reasons[1].startswith("bad signature")
    assert reasons[2].startswith("replayed")
    assert [r[0] for r in query(relay_a, "SELECT key FROM relay_publications")] == [key]


def test_a_relay_reader_manages_their_copy_by_email_and_replies_to_a_hub_forum_as_a_member(
        nodes, sink):
    hub, relay_a, relay_b, ports = nodes
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--no-charter", site=hub)
    listserv("relay", "edit", "relay-a", "--add-digest", "peace", site=hub)

    send_mail(ports["relay-a"], "ana@example.org", ["listserv@relay-a.example.org"],
              "From: Ana <ana@example.org>\nTo: listserv@relay-a.example.org\n"
              "Subject: set budget 4000\nMessage-ID: <b1@example.org>\n\n")
    (answer,) = sink.wait_for_recipient("ana@example.org", timeout=30)
    assert "au plus 4000 octets" in body_text(answer)
    assert query(relay_a, "SELECT budget FROM relay_recipients WHERE address = ?",
                 ["ana@example.org"]) == [(4000,)]

    send_mail(ports["relay-a"], "ana@example.org", ["reply+peace@relay-a.example.org"],
              "From: Ana <ana@example.org>\nTo: reply+peace@relay-a.example.org\n"
              "Subject: Re: Rencontre\nMessage-ID: <p1@example.org>\n\n"
              "Merci pour ce message, nous viendrons tous à la rencontre de samedi.\n")
    wait_until(lambda: query(hub, "SELECT sender, status FROM posts") ==
               [("ana@example.org", "distributed")] or query(
                   hub, "SELECT sender, status FROM posts") == [("ana@example.org", "approved")],
               what="Ana's reply distributed at the hub as a member's")
    (raw,) = query(hub, "SELECT m.raw FROM messages m JOIN posts p ON p.message_id = m.id")
    assert b"Content-Language: fr\r\n" in bytes(raw[0])
    assert query(hub, "SELECT count(*) FROM holds") == [(0,)]
