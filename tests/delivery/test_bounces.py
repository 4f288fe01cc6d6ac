"""Bounces: reports arriving at FORUM-bounces@D, and VERP addresses."""

from __future__ import annotations

import json
from pathlib import Path

from listserv.delivery.bounces import handle_bounce_message, read_verp, record_bounce, verp_sender
from listserv.delivery.engine import deliver_pending
from listserv.delivery.queue import enqueue_members, queue_message, store_body
from listserv.site import forums, members

MAIL = Path(__file__).parent.parent / "mail"
DOMAIN = "lists.example.org"
BODY = b"From: ana@example.org\r\nSubject: [peace] Water\r\n\r\nWells.\r\n"

DELAYED = b"""\
From: MAILER-DAEMON@mx.example.net
To: peace-bounces+ben=example.org@lists.example.org
Subject: Delayed Mail (still being retried)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="d"

--d
Content-Type: text/plain

Your message is delayed; we keep trying.

--d
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; ben@example.org
Action: delayed
Status: 4.4.1
Diagnostic-Code: smtp; 421 4.4.1 connection timed out

--d--
"""


def peace(site, now, *addresses) -> dict:
    forum = forums.create(site.db, "peace", title="Peace", path="thematic", now=now)
    for address in addresses:
        members.add(site.db, "peace", address, now=now, languages=("en",))
    return forum


def member_bounces(site) -> dict[str, int]:
    return {m["address"]: m["bounces"] for m in site.db.query("SELECT * FROM members")}


def handle(site, raw: bytes, detail: str, now, slug: str | None = None) -> list[str]:
    return site.write_now(lambda db: handle_bounce_message(db, site, raw, detail, now, slug))


def test_a_dsn_to_forum_bounces_is_recorded_against_the_delivery_and_the_member(site, sink,
                                                                                now):
    forum = peace(site, now, "ana@example.org", "ben@example.org")
    site.write_now(queue_message, "post:1", BODY, ["ana@example.org", "ben@example.org"],
                   f"peace-bounces@{DOMAIN}", now, forum["id"])
    deliver_pending(site, now)
    raw = (MAIL / "bounce-user-unknown.eml").read_bytes()
    assert handle(site, raw, "", now, "peace") == ["ben@example.org"]
    (bounce,) = site.db.query("SELECT * FROM bounces")
    assert (bounce["recipient"], bounce["code"], bounce["forum_id"]) == \
        ("ben@example.org", 550, forum["id"])
    assert "User unknown" in bounce["detail"]
    delivery = site.db.execute("SELECT id, status FROM deliveries WHERE recipient = ?",
                               ["ben@example.org"]).fetchone()
    assert (bounce["delivery_id"], delivery[1]) == (delivery[0], "bounced")
    assert member_bounces(site) == {"ana@example.org": 0, "ben@example.org": 1}


def test_a_dsn_about_one_member_of_a_batch_splits_that_member_off_the_batch(site, sink, now):
    addresses = ["ana@example.org", "ben@example.org", "cleo@example.org"]
    forum = peace(site, now, *addresses)

    def work(db):
        body_id = store_body(db, "post:1", BODY, now, forum["id"])
        return enqueue_members(db, "post:1", body_id, f"peace-bounces@{DOMAIN}", now,
                               forum_id=forum["id"], mode="each", profile="email", batch=100)
    assert site.write_now(work) == 3
    assert site.db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 1  # one batch
    deliver_pending(site, now)
    assert sorted(sink.recipients()) == addresses
    raw = (MAIL / "bounce-user-unknown.eml").read_bytes()  # about ben
    assert handle(site, raw, "", now, "peace") == ["ben@example.org"]
    (bounce,) = site.db.query("SELECT * FROM bounces")
    rows = list(site.db.query("SELECT id, recipient, recipients, size, status FROM deliveries "
                              "ORDER BY id"))
    assert [(r["recipient"], r["size"], r["status"]) for r in rows] == [
        ("ana@example.org", 2, "sent"), ("ben@example.org", 1, "bounced")]
    assert sorted(json.loads(rows[0]["recipients"])) == ["ana@example.org", "cleo@example.org"]
    assert bounce["delivery_id"] == rows[1]["id"]
    assert member_bounces(site) == {"ana@example.org": 0, "ben@example.org": 1,
                                    "cleo@example.org": 0}
    assert sorted(site.db.execute("SELECT recipient, status FROM delivery_recipients")) == [
        ("ana@example.org", "sent"), ("ben@example.org", "bounced"),
        ("cleo@example.org", "sent")]


def test_a_dsn_without_the_forum_named_is_counted_on_the_addressesonly_forum(site, now):
    peace(site, now, "ben@example.org")
    raw = (MAIL / "bounce-user-unknown.eml").read_bytes()
    assert handle(site, raw, "", now) == ["ben@example.org"]
    assert member_bounces(site) == {"ben@example.org": 1}


def test_the_verp_address_names_the_member_when_the_report_names_a_forward(site, now):
    peace(site, now, "ben@example.org")
    raw = (MAIL / "bounce-verp.eml").read_bytes()  # the report names ben.forward@example.net
    assert handle(site, raw, "ben=example.org", now, "peace") == ["ben@example.org"]
    (bounce,) = site.db.query("SELECT * FROM bounces")
    assert bounce["recipient"] == "ben@example.org"
    assert member_bounces(site) == {"ben@example.org": 1}


def test_a_bounce_with_no_report_at_all_still_counts_through_verp(site, now):
    peace(site, now, "ben@example.org")
    raw = b"From: postmaster@example.org\r\nSubject: failure\r\n\r\nSorry, it did not work.\r\n"
    assert handle(site, raw, "ben=example.org", now, "peace") == ["ben@example.org"]


def test_a_delay_warning_records_nothing(site, now):
    peace(site, now, "ben@example.org")
    assert handle(site, DELAYED, "ben=example.org", now, "peace") == []
    assert site.db.execute("SELECT count(*) FROM bounces").fetchone()[0] == 0


def test_a_report_about_someone_who_is_neither_member_nor_recipient_changes_nothing(site, now):
    peace(site, now, "ana@example.org")
    raw = (MAIL / "bounce-user-unknown.eml").read_bytes()  # about ben
    assert handle(site, raw, "", now, "peace") == []
    assert handle(site, b"\x00\xff not mail at all", "nobody=example.org", now) == []
    assert site.db.execute("SELECT count(*) FROM bounces").fetchone()[0] == 0


def test_record_bounce_finds_the_forum_through_the_delivery(site, sink, now):
    forum = peace(site, now, "ana@example.org")
    site.write_now(queue_message, "post:1", BODY, ["ana@example.org"],
                   f"peace-bounces@{DOMAIN}", now, forum["id"])
    delivery_id = site.db.execute("SELECT id FROM deliveries").fetchone()[0]
    site.write_now(record_bounce, delivery_id, "Ana@Example.org", 552, "mailbox full", now)
    (bounce,) = site.db.query("SELECT * FROM bounces")
    assert (bounce["recipient"], bounce["forum_id"], bounce["at"]) == \
        ("ana@example.org", forum["id"], now.isoformat())
    assert member_bounces(site) == {"ana@example.org": 1}


def test_verp_addresses_round_trip_and_leave_foreign_senders_alone():
    for recipient in ("ana@example.org", "ben+news@example.org", "a=b@example.net"):
        sender = verp_sender(f"peace-bounces@{DOMAIN}", recipient, DOMAIN)
        local = sender.rpartition("@")[0]
        assert local.startswith("peace-bounces+")
        assert read_verp(local.partition("+")[2]) == recipient
    assert verp_sender("someone@example.com", "ana@example.org", DOMAIN) == "someone@example.com"
    assert read_verp("") is None and read_verp("no-equals-sign") is None
