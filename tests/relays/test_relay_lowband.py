"""Low-bandwidth delivery at a relay: plain text at 72 columns, no attachments,
every message under the reader's byte budget (numbered parts when longer),
links as references that `get REF` by email answers under the same budget."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from relaykit import (
    add_recipients,
    body_text,
    receive,
    run_pipeline,
    whatsnew_payload,
    wire_text,
    write_relay_site,
)

from listserv.delivery.dkim import new_key
from listserv.delivery.engine import deliver_pending
from listserv.site.folder import Site
from relays import dispatch, translation

BUDGET = 2000


def long_payload() -> dict:
    payload = whatsnew_payload()
    items = payload["sections"][0]["items"]
    for n in range(12):
        items.append({"ref": f"INIT-{60 + n}", "title": f"Initiative number {n}",
                      "text": "A cooperative of women farmers shares seeds and tools across "
                              "the valley, and writes it all down. " * 3,
                      "link": f"https://example.org/initiatives/{n}", "language": "en",
                      "region": "Sahel", "path": "geocultural", "forum": ""})
    return payload


@pytest.fixture
def relay(tmp_path, sink, now) -> Site:
    site = Site(write_relay_site(tmp_path / "relay-a", smarthost=sink.port,
                                 languages=("fr",), translators={"fr": "tr@example.org"}))
    add_recipients(site, now,
                   {"who": "ana@example.org", "profile": "lowband", "language": "fr",
                    "budget": BUDGET},
                   {"who": "ben@example.net", "profile": "lowband", "language": "fr"},
                   {"who": "carl@example.org", "profile": "lowband", "language": "es",
                    "budget": BUDGET})
    return site


def dispatched(site: Site, now, payload=None) -> dict:
    publication = receive(site, payload or long_payload(), now)
    with site.db.atomic():
        translation.prepare_received(site.db, site, now)
        translation.expire_due(site.db, site, now + timedelta(days=3))
        dispatch.dispatch_ready(site.db, site, now + timedelta(days=3))
    deliver_pending(site, now + timedelta(days=3))
    return site.db["relay_publications"].get(publication["id"])


def test_signed_copies_are_under_the_budget_signatures_included(tmp_path, sink, now, caplog):
    """With RSA and Ed25519 signatures (about 1,500 bytes a copy) each copy as
    the reader receives it is still within the budget; a budget the headers and
    signatures alone nearly fill still gets the publication, in the smallest
    parts, and the log says why they are over it."""
    folder = write_relay_site(tmp_path / "relay-s", smarthost=sink.port, languages=("fr",),
                              translators={"fr": "tr@example.org"})
    new_key(folder / "data" / "dkim.key")
    new_key(folder / "data" / "dkim-ed25519.key", "ed25519")
    with (folder / "listserv.toml").open("a", encoding="utf-8") as config:
        config.write('[dkim]\nselector = "ls2026"\ned25519_selector = "ed2026"\n')
    site = Site(folder)
    add_recipients(site, now,
                   {"who": "ana@example.org", "profile": "lowband", "language": "fr",
                    "budget": 4000},
                   {"who": "ben@example.net", "profile": "lowband", "language": "fr",
                    "budget": 1500})
    dispatched(site, now)
    roomy = [c for c in sink.caught if "ana@example.org" in c.rcpt_tos]
    assert len(roomy) > 2
    assert all(c.data.count(b"DKIM-Signature:") == 2 for c in roomy)
    assert all(len(c.data) <= 4000 for c in roomy), [len(c.data) for c in roomy]
    tight = [c for c in sink.caught if "ben@example.net" in c.rcpt_tos]
    assert len(tight) > len(roomy)  # everything, in more and smaller parts
    text = "".join(wire_text(c.message) for c in tight)
    assert all(f"Initiative number {n}" in text for n in range(12))
    assert "a budget of 1500 bytes is too small" in caplog.text


def test_every_copy_is_plain_text_at_72_columns_under_the_budget_in_numbered_parts(
        relay, sink, now):
    dispatched(relay, now)
    copies = [c for c in sink.caught if "ana@example.org" in c.rcpt_tos]
    assert len(copies) > 2
    total = len(copies)
    for number, caught in enumerate(sorted(copies, key=lambda c: c.message["Subject"]), 1):
        assert len(caught.data) <= BUDGET
        message = caught.message
        assert not message.is_multipart() and message.get_content_type() == "text/plain"
        text = wire_text(message)
        assert message.get_param("format") == "flowed"
        assert all(len(line) <= 72 for line in text.splitlines()), text
        assert "http://" not in text and "https://" not in text
    subjects = sorted(c.message["Subject"] for c in copies)
    assert all(re.search(rf"\(\d+/{total}\)$", s) for s in subjects)
    first = [c for c in copies if c.message["Subject"].endswith(f"(1/{total})")][0]
    assert body_text(first.message).startswith(f"[1/{total}]\n\n[en] What's New no. 17")


def test_a_bigger_budget_gets_the_whole_text_in_fewer_parts(relay, sink, now):
    dispatched(relay, now)
    small = [c for c in sink.caught if "ana@example.org" in c.rcpt_tos]
    big = [c for c in sink.caught if "ben@example.net" in c.rcpt_tos]
    assert len(big) == 1 < len(small)
    text = body_text(big[0].message)
    for n in range(12):
        assert f"Initiative number {n}" in text
    parts = "".join(body_text(c.message).split("\n\n", 1)[1] for c in
                    sorted(small, key=lambda c: int(re.search(r"\((\d+)/", c.message["Subject"])
                                                         .group(1))))
    assert [line for line in parts.splitlines() if line.startswith("* ")] == \
        [line for line in text.splitlines() if line.startswith("* ")]


def test_a_reader_in_a_language_the_relay_does_not_serve_gets_the_original(relay, sink, now):
    dispatched(relay, now)
    copies = [c for c in sink.caught if "carl@example.org" in c.rcpt_tos]
    text = "".join(body_text(c.message) for c in copies)
    assert "What's New no. 17" in text and "[en]" not in text


def test_dispatch_counts_go_to_the_hub_and_dispatching_again_sends_nothing(relay, now):
    publication = dispatched(relay, now)
    counts = json.loads(publication["counts"])
    assert counts["lowband"]["recipients"] == 3
    assert counts["postal"] == {"recipients": 0, "batches": 0}
    before = relay.db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    with relay.db.atomic():
        dispatch.dispatch(relay.db, relay, publication, now + timedelta(days=3))
    assert relay.db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == before
    (ack,) = relay.db.execute("SELECT b.raw FROM deliveries d JOIN bodies b ON b.id = "
                              "d.body_id WHERE d.ref = 'relay-ack:whatsnew:17:dispatched'"
                              ).fetchall()
    assert b'"lowband"' in ack[0] or b"lowband" in ack[0]


def test_get_by_email_answers_with_the_link_under_the_readers_budget(relay, sink, now):
    dispatched(relay, now)
    first = body_text([c for c in sink.caught if "ben@example.net" in c.rcpt_tos][0].message)
    item_ref, link_ref = re.search(r"More: get (L\d+), the link: get (L\d+)|"
                                   r"Plus : get (L\d+), le lien : get (L\d+)",
                                   first).groups()[2:]
    later = now + timedelta(days=3, minutes=5)
    run_pipeline(relay, f"From: Ana <ana@example.org>\nTo: listserv@relay-a.example.org\n"
                        f"Subject: get {link_ref}\nMessage-ID: <g1@example.org>\n\n"
                        f"get {item_ref}\nget L999\n", later,
                 ["listserv@relay-a.example.org"], "ana@example.org")
    deliver_pending(relay, later)
    answers = [c for c in sink.caught if "ana@example.org" in c.rcpt_tos
               and c.message["In-Reply-To"] == "<g1@example.org>"]
    assert answers and all(len(c.data) <= BUDGET for c in answers)
    text = "".join(body_text(c.message) for c in answers)
    assert "Lien : https://example.org/kayes" in text
    assert "L999 : cette référence n'existe pas ici" in text
    assert "A new well in Kayes" in text


def test_mail_to_the_command_address_without_a_command_gets_the_usage(relay, sink, now):
    run_pipeline(relay, "From: zoe@example.org\nTo: listserv@relay-a.example.org\n"
                        "Subject: hello\nMessage-ID: <h1@example.org>\n\nWhat is this?\n",
                 now, ["listserv@relay-a.example.org"], "zoe@example.org")
    deliver_pending(relay, now)
    (answer,) = sink.wait_for_recipient("zoe@example.org")
    assert answer["Subject"] == "How to get a reference"
    assert 'write "get" and its' in body_text(answer)


def test_a_forum_digest_tells_readers_where_to_reply_in_the_forum(relay, sink, now):
    digest = {"key": "digest:peace:3", "kind": "digest", "number": 3, "language": "fr",
              "title": "Paix et dialogue - recueil 3", "forum": "peace",
              "sections": [{"heading": "Paix et dialogue", "subheading": "", "items": [
                  {"ref": "POST-9", "title": "Rencontre à Bamako", "author": "Awa Diop",
                   "text": "Nous nous retrouvons samedi.", "language": "fr"}]}],
              "text": "", "html": ""}
    dispatched(relay, now, digest)
    (copy,) = [c for c in sink.caught if "ben@example.net" in c.rcpt_tos]
    text = body_text(copy.message)
    assert "* Rencontre à Bamako\n  Nous nous retrouvons samedi.\n  (Awa Diop)" in text
    assert "écrivez à reply+peace@relay-a.example.org" in text


def test_each_copy_is_addressed_to_its_reader_and_says_how_to_leave(relay, sink, now):
    dispatched(relay, now)
    for address in ("ana@example.org", "ben@example.net", "carl@example.org"):
        copies = [c.message for c in sink.caught if address in c.rcpt_tos]
        assert copies and all(m["To"] == address for m in copies)
        assert all(m["List-Unsubscribe"] == "<mailto:listserv@relay-a.example.org"
                                            "?subject=unsubscribe>" for m in copies)
    (ben,) = [c.message for c in sink.caught if "ben@example.net" in c.rcpt_tos]
    assert 'écrivez « unsubscribe » à listserv@relay-a.example.org' in body_text(ben)


@pytest.mark.parametrize("budget", range(1500, 4200, 90))
def test_no_part_is_the_footer_alone_and_the_last_part_carries_it(relay, now, budget):
    from relays.lowband import plan_parts

    paragraphs = [f"* Item {n}\n  " + "Seeds and tools shared across the valley. " * (n % 5 + 1)
                  for n in range(14)]
    footer = ("--\nTo read more, write \"get\" and the reference to listserv@relay-a."
              "example.org.\nTo stop receiving these, write \"unsubscribe\" to "
              "listserv@relay-a.example.org.")
    plan = plan_parts(relay, to="ana@example.org", subject="What's New no. 17",
                      text="\n\n".join(paragraphs) + "\n\n" + footer, budget=budget, now=now)
    bodies = [text.split("\n\n", 1)[1] if len(plan) > 1 else text for _, text in plan]
    assert all(not body.lstrip().startswith("--") for body in bodies)
    assert "unsubscribe" in bodies[-1] and all("unsubscribe" not in b for b in bodies[:-1])
    assert "".join(bodies).count("* Item") == 14


def test_a_long_link_is_never_broken_across_lines(relay, sink, now):
    link = "https://example.org/initiatives/2026/sahel/kayes/a-new-well-dug-by-the-whole-" \
           "village-in-the-dry-season?lang=fr&photos=1"
    dispatched(relay, now, whatsnew_payload(link=link))
    first = body_text([c for c in sink.caught if "ben@example.net" in c.rcpt_tos][0].message)
    link_ref = re.search(r"(?:the link|le lien) : get (L\d+)", first).group(1)
    later = now + timedelta(days=3, minutes=5)
    run_pipeline(relay, f"From: ben@example.net\nTo: listserv@relay-a.example.org\n"
                        f"Subject: get {link_ref}\nMessage-ID: <g2@example.org>\n\n", later,
                 ["listserv@relay-a.example.org"], "ben@example.net")
    deliver_pending(relay, later)
    (answer,) = [c.message for c in sink.caught if "ben@example.net" in c.rcpt_tos
                 and c.message["In-Reply-To"] == "<g2@example.org>"]
    assert link in wire_text(answer).splitlines()
