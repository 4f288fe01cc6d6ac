"""The hub's side: relays added from the command line, each publication sent
once per relay that carries it, acknowledgements in `relay status`, and
allies' mail passed up by a relay entering the hub's own intake."""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta

import pytest
from helpers import listserv
from relaykit import (
    HUB_DOMAIN,
    SECRET,
    add_recipients,
    outgoing,
    receive,
    run_pipeline,
    store_publication,
    whatsnew_payload,
    write_relay_site,
)

from listserv.site import forums, members
from listserv.site.folder import Site
from relays import dispatch, hub, postal, translation

NEW_SECRET_LINE = SECRET + "\n"


@pytest.fixture
def hub_site(site, tmp_path, now) -> Site:
    (tmp_path / "a.key").write_text(NEW_SECRET_LINE)
    with site.db.atomic():
        forums.create(site.db, "peace", title="Peace", path="thematic", now=now)
        forums.create(site.db, "water", title="Water", path="thematic", now=now)
        hub.add_relay(site.db, "relay-a", address="relay@relay-a.example.org",
                      secret_file=tmp_path / "a.key", now=now, languages=["fr"],
                      digests=["peace"])
    return site


@pytest.fixture
def relay(tmp_path, sink) -> Site:
    return Site(write_relay_site(tmp_path / "relay-a", smarthost=sink.port))


def digest_payload(slug: str, number: int) -> dict:
    return {"key": f"digest:{slug}:{number}", "kind": "digest", "number": number,
            "title": f"{slug} digest {number}", "language": "en", "forum": slug,
            "sections": [{"heading": slug, "subheading": "", "items": [
                {"ref": "POST-1", "title": "Hello", "text": "A post.", "author": "Ana",
                 "language": "en"}]}], "text": "", "html": ""}


def test_relay_add_writes_a_private_secret_and_relay_list_shows_it(site, tmp_path):
    secret = tmp_path / "keys" / "b.key"
    added = listserv("relay", "add", "relay-b", "--address", "relay@relay-b.example.org",
                     "--secret-file", str(secret), "--language", "pt", "--region",
                     "Lusophone Africa", site=site.folder)
    assert "Wrote a new shared secret" in added.stderr
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert len(secret.read_text().strip()) == 64
    (row,) = json.loads(listserv("relay", "list", "--json", site=site.folder).stdout)
    assert (row["id"], row["languages"], row["regions"], row["sent"]) == \
        ("relay-b", ["pt"], ["Lusophone Africa"], 0)
    again = listserv("relay", "add", "relay-b", "--address", "relay@relay-b.example.org",
                     "--secret-file", str(secret), site=site.folder, check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    unknown = listserv("relay", "add", "relay-c", "--address", "relay@c.example.org",
                       "--secret-file", str(secret), "--digest", "nope", site=site.folder,
                       check=False)
    assert unknown.returncode == 1 and "forum 'nope' does not exist" in unknown.stderr


def test_relay_commands_say_where_they_run(relay, tmp_path):
    result = listserv("relay", "add", "x", "--address", "relay@x.example.org",
                      "--secret-file", str(tmp_path / "x.key"), site=relay.folder, check=False)
    assert result.returncode == 1
    assert "'relay add' runs on the hub; this site is a relay" in result.stderr


def test_each_publication_goes_once_to_each_relay_that_carries_it(hub_site, now):
    db = hub_site.db
    water = forums.find(db, "water")["id"]
    peace = forums.find(db, "peace")["id"]
    with db.atomic():
        store_publication(db, whatsnew_payload(17), now)
        store_publication(db, digest_payload("peace", 3), now, forum_id=peace)
        store_publication(db, digest_payload("water", 3), now, forum_id=water)
    for _ in range(2):
        with db.atomic():
            hub.send_publications(db, hub_site, now)
    sent = outgoing(hub_site, "relay:%")
    assert [(to, ref) for to, ref in zip([s[0] for s in sent],
                                         [r[0] for r in db.execute(
                                             "SELECT ref FROM deliveries WHERE ref LIKE "
                                             "'relay:%' ORDER BY id")])] == [
        ("relay@relay-a.example.org", "relay:whatsnew:17:relay-a"),
        ("relay@relay-a.example.org", "relay:digest:peace:3:relay-a")]
    assert b"X-Listserv-Trace: lists.example.org" in sent[0][1]
    assert b"application/json" in sent[0][1]


def test_a_new_relay_gets_the_latest_issue_but_not_the_archive(site, tmp_path, now):
    (tmp_path / "a.key").write_text(NEW_SECRET_LINE)
    with site.db.atomic():
        store_publication(site.db, whatsnew_payload(15), now - timedelta(days=28))
        store_publication(site.db, whatsnew_payload(16), now - timedelta(days=14))
        hub.add_relay(site.db, "relay-a", address="relay@relay-a.example.org",
                      secret_file=tmp_path / "a.key", now=now)
        store_publication(site.db, whatsnew_payload(17), now + timedelta(days=1))
        hub.send_publications(site.db, site, now + timedelta(days=1))
    assert [r[0] for r in site.db.execute("SELECT ref FROM deliveries ORDER BY id")] == [
        "relay:whatsnew:16:relay-a", "relay:whatsnew:17:relay-a"]


def test_a_paused_relay_is_sent_nothing_until_resumed(hub_site, now):
    listserv("relay", "edit", "relay-a", "--pause", site=hub_site.folder)
    with hub_site.db.atomic():
        store_publication(hub_site.db, whatsnew_payload(17), now)
        assert hub.send_publications(hub_site.db, hub_site, now) == 0
    listserv("relay", "edit", "relay-a", "--resume", site=hub_site.folder)
    with hub_site.db.atomic():
        assert hub.send_publications(hub_site.db, hub_site, now) == 1


def test_the_relays_acknowledgements_show_in_relay_status(hub_site, relay, now):
    with hub_site.db.atomic():
        store_publication(hub_site.db, whatsnew_payload(17), now)
        hub.send_publications(hub_site.db, hub_site, now)
    ((_, raw),) = outgoing(hub_site, "relay:%")
    run_pipeline(relay, raw, now, ["relay@relay-a.example.org"], f"listserv-bounces@{HUB_DOMAIN}")
    add_recipients(relay, now, {"who": "ana@example.org", "profile": "lowband", "language": "fr"},
                   {"who": "Moussa", "profile": "postal", "language": "fr",
                    "postal_address": "BP 12; Kayes", "country": "ML"})
    later = now + timedelta(days=3, seconds=1)
    with relay.db.atomic():
        translation.prepare_received(relay.db, relay, now)
        translation.expire_due(relay.db, relay, later)
        dispatch.dispatch_ready(relay.db, relay, later)
    for _, ack in outgoing(relay, "relay-ack:%"):
        run_pipeline(hub_site, ack, later, [f"relay@{HUB_DOMAIN}"],
                     "listserv-bounces@relay-a.example.org")
    (report,) = json.loads(listserv("relay", "status", "relay-a", "--json",
                                    site=hub_site.folder).stdout)
    assert (report["received"], report["translated"], report["dispatched"]) == (1, 1, 1)
    (sent,) = report["publications"]
    assert sent["dispatched"]["profiles"]["lowband"]["recipients"] == 1
    assert sent["dispatched"]["profiles"]["postal"] == {"recipients": 1, "batches": 1,
                                                         "posted": 0}
    assert sent["translated"]["languages"]["fr"]["segments"] == 9
    text = listserv("relay", "status", site=hub_site.folder).stdout
    assert "received 1, translated 1, dispatched 1" in text
    assert "lowband 1 recipients" in text and "postal 1 in 1 batches, 0 posted" in text

    # By post, "dispatched" means posted: the operator's mark-sent reaches the hub.
    postal.build_pending(relay, later)
    listserv("postal", "mark-sent", "whatsnew-17-fr", "--at", later.isoformat(),
             site=relay.folder)
    ((_, posted),) = outgoing(relay, "relay-ack:%:posted:%")
    run_pipeline(hub_site, posted, later, [f"relay@{HUB_DOMAIN}"],
                 "listserv-bounces@relay-a.example.org")
    (report,) = json.loads(listserv("relay", "status", "relay-a", "--json",
                                    site=hub_site.folder).stdout)
    (sent,) = report["publications"]
    assert sent["posted_at"] and sent["posted"]["whatsnew-17-fr"]["recipients"] == 1
    assert sent["dispatched"]["profiles"]["postal"]["posted"] == 1
    assert "postal 1 in 1 batches, 1 posted" in listserv("relay", "status",
                                                        site=hub_site.folder).stdout
    status = listserv("status", site=hub_site.folder, check=False).stdout
    assert "relay-a (active): 1 sent, 1 received, 1 dispatched" in status


def test_an_acknowledgement_from_an_unknown_relay_is_refused(hub_site, tmp_path, now):
    stranger = Site(write_relay_site(tmp_path / "relay-z", "relay-z", secret="z" * 40))
    receive(stranger, whatsnew_payload(), now)
    ((_, ack),) = outgoing(stranger, "relay-ack:%")
    run_pipeline(hub_site, ack, now, [f"relay@{HUB_DOMAIN}"])
    (reason,) = [r[0] for r in hub_site.db.execute("SELECT reason FROM federation_refusals")]
    assert reason == "unknown node 'relay-z'"


def test_an_allys_initiative_at_a_relay_enters_the_hubs_intake_as_theirs(hub_site, relay, now):
    report = ("From: Awa Diop <awa@example.org>\nTo: whatsnew@relay-a.example.org\n"
              "Subject: Seed fair in Thies\nMessage-ID: <seed-1@example.org>\n\n"
              "We held a seed fair with forty farmers.\n")
    run_pipeline(relay, report, now, ["whatsnew@relay-a.example.org"], "awa@example.org")
    run_pipeline(relay, report, now, ["whatsnew@relay-a.example.org"], "awa@example.org")
    ups = outgoing(relay, "relay-upstream:%")
    assert len(ups) == 2  # two messages stored, each passed up once
    run_pipeline(hub_site, ups[0][1], now, [f"relay@{HUB_DOMAIN}"])
    row = hub_site.db.execute("SELECT mail_from, rcpt_tos, raw FROM messages WHERE "
                              "mail_from = 'awa@example.org'").fetchone()
    assert row[0] == "awa@example.org" and json.loads(row[1]) == [f"whatsnew@{HUB_DOMAIN}"]
    raw = bytes(row[2])
    assert raw.startswith(b"Received: from relay-a by lists.example.org")
    assert b"X-Listserv-Relay: relay-a\r\n" in raw
    assert b"X-Listserv-Trace: relay-a, lists.example.org\r\n" in raw
    assert b"From: Awa Diop <awa@example.org>" in raw
    run_pipeline(hub_site, ups[0][1], now, [f"relay@{HUB_DOMAIN}"])  # a replay
    assert hub_site.db.execute("SELECT count(*) FROM messages WHERE mail_from = "
                               "'awa@example.org'").fetchone()[0] == 1


def test_a_forum_reply_at_a_relay_reaches_the_hubs_forum_from_its_author(hub_site, relay,
                                                                        now):
    with hub_site.db.atomic():
        members.add(hub_site.db, "peace", "ben@example.net", now=now,
                    languages=("en", "fr", "es", "pt"), charter_accepted=True)
    reply = ("From: Ben <ben@example.net>\nTo: reply+peace@relay-a.example.org\n"
             "Subject: Re: Hello\nMessage-ID: <re-1@example.net>\n\nAgreed, let us meet.\n")
    run_pipeline(relay, reply, now, ["reply+peace@relay-a.example.org"], "ben@example.net")
    ((_, up),) = outgoing(relay, "relay-upstream:%")
    run_pipeline(hub_site, up, now, [f"relay@{HUB_DOMAIN}"])
    (post,) = hub_site.db.execute("SELECT sender, subject, status FROM posts").fetchall()
    assert post == ("ben@example.net", "Re: Hello", "approved")


def test_automatic_and_looping_mail_is_not_passed_up(relay, now):
    auto = ("From: ana@example.org\nTo: whatsnew@relay-a.example.org\nSubject: Away\n"
            "Auto-Submitted: auto-replied\nMessage-ID: <a1@example.org>\n\nI am away.\n")
    looped = ("From: ana@example.org\nTo: whatsnew@relay-a.example.org\nSubject: Again\n"
              "X-Listserv-Trace: relay-a, lists.example.org\nMessage-ID: <a2@example.org>\n\n"
              "Round and round.\n")
    for text in (auto, looped):
        run_pipeline(relay, text, now, ["whatsnew@relay-a.example.org"], "ana@example.org")
    assert outgoing(relay, "relay-upstream:%") == []
