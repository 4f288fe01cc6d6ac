"""The delivery engine, through real SMTP sinks, a real Maildir and real SQLite."""

from __future__ import annotations

import asyncio
import json
import mailbox
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

from helpers import free_port, running_sink, write_site

from listserv.mail.tokens import read_bounce_token
from listserv.delivery.engine import (
    deliver_pending,
    personal_headers,
    queue_report,
    recover,
    run_delivery,
)
from listserv.delivery.queue import enqueue, enqueue_members, queue_message, store_body
from listserv.delivery.rows import Router, claim
from listserv.mail.tokens import read_link, short_mac
from listserv.site import forums, members
from listserv.site.folder import Site

SENDER = "peace-bounces@lists.example.org"
BODY = (b"From: Ana <ana@example.org>\r\nTo: peace@lists.example.org\r\n"
        b"Subject: [peace] Water\r\nMessage-ID: <w1@example.org>\r\n\r\nWells for the valley.\r\n")


def queue(site, now, recipients, ref="post:1", **options) -> int:
    return site.write_now(queue_message, ref, BODY, recipients, SENDER, now,
                          options.get("forum_id"))


def rows(site) -> dict[str, dict]:
    return {row["recipient"]: row for row in site.db.query("SELECT * FROM deliveries")}


def statuses(site) -> dict[str, str]:
    return {recipient: row["status"] for recipient, row in rows(site).items()}


def make_forum(site, now, *addresses) -> dict:
    forum = forums.create(site.db, "peace", title="Peace", path="thematic", now=now)
    for address in addresses:
        members.add(site.db, "peace", address, now=now, languages=("en",))
    return forum


def test_queued_rows_reach_the_sink_exactly_once(site, sink, now):
    queue(site, now, ["ana@example.org", "ben@example.org", "carol@example.net"])
    assert deliver_pending(site, now) == {"sent": 3, "deferred": 0, "bounced": 0, "failed": 0}
    assert deliver_pending(site, now + timedelta(hours=1))["sent"] == 0
    assert sorted(sink.recipients()) == ["ana@example.org", "ben@example.org",
                                         "carol@example.net"]
    assert set(statuses(site).values()) == {"sent"}
    assert all(row["sent_at"] == now.timestamp() for row in rows(site).values())
    (copy,) = sink.messages_to("ben@example.org")
    assert copy["Subject"] == "[peace] Water"
    assert {caught.mail_from for caught in sink.caught} == {SENDER}


def test_recipients_of_one_domain_share_a_transaction_up_to_the_batch_size(tmp_path, sink, now):
    site = Site(write_site(tmp_path / "site", sink.port, extra="batch_size = 2\n"))
    queue(site, now, ["a@example.org", "b@example.org", "c@example.org", "d@other.org"])
    deliver_pending(site, now)
    transactions = sorted(sorted(caught.rcpt_tos) for caught in sink.caught)
    assert transactions == [["a@example.org", "b@example.org"], ["c@example.org"],
                            ["d@other.org"]]


def test_one_domain_goes_in_one_transaction_with_the_default_batch_size(site, sink, now):
    queue(site, now, [f"m{n}@example.org" for n in range(30)] + ["x@other.org"])
    deliver_pending(site, now)
    assert sorted(len(caught.rcpt_tos) for caught in sink.caught) == [1, 30]


def test_connections_are_reused_and_one_the_server_dropped_is_replaced(tmp_path, sink, now):
    site = Site(write_site(tmp_path / "site", sink.port, extra="concurrency = 1\n"))
    mails: dict[int, int] = {}

    async def handle_MAIL(server, session, envelope, address, options):
        mails[id(session)] = mails.get(id(session), 0) + 1
        if mails[id(session)] == 3:  # the server gives up on this connection
            server.transport.close()
        envelope.mail_from = address
        return "250 OK"
    sink.handler.handle_MAIL = handle_MAIL
    for ref in ("post:1", "post:2", "post:3", "post:4"):
        queue(site, now, ["ana@example.org"], ref=ref)
    assert deliver_pending(site, now)["sent"] == 4
    assert len(sink.caught) == 4
    assert sorted(mails.values()) == [2, 3]  # 2 sent on the first connection, 2 on a new one


def fan_out(site, now, forum, batch: int, ref: str = "post:1") -> int:
    """Queue BODY to the forum's members as a post's fan-out does: batch rows."""
    def work(db):
        body_id = store_body(db, ref, BODY, now, forum["id"])
        return enqueue_members(db, ref, body_id, SENDER, now, forum_id=forum["id"],
                               mode="each", profile="email", batch=batch)
    return site.write_now(work)


def recipient_rows(site) -> dict[str, tuple]:
    """(row id, status, attempts) per recipient, batch rows spelled out."""
    return {row["recipient"]: (row["id"], row["status"], row["attempts"])
            for row in site.db.query("SELECT * FROM delivery_recipients")}


def test_a_fan_out_writes_a_row_per_transaction_and_reaches_each_member_once(tmp_path, sink,
                                                                             now):
    site = Site(write_site(tmp_path / "site", sink.port, extra="batch_size = 3\n"))
    addresses = [f"m{n}@example.org" for n in range(7)] + ["x@other.org", "y@other.org"]
    forum = make_forum(site, now, *addresses)
    assert fan_out(site, now, forum, batch=3) == 9
    assert fan_out(site, now, forum, batch=3) == 0  # the same send again: nobody twice
    assert site.write_now(enqueue, "post:1", 1, ["m4@example.org"], SENDER, now) == 0
    batches = list(site.db.query("SELECT domain, size, recipients FROM deliveries "
                                 "ORDER BY domain, recipient"))
    assert [(b["domain"], b["size"]) for b in batches] == [
        ("example.org", 3), ("example.org", 3), ("example.org", 1), ("other.org", 2)]
    assert sorted(a for b in batches if b["recipients"] for a in json.loads(b["recipients"])) \
        == sorted(addresses[:6] + addresses[7:])
    report = queue_report(site.db, now)  # counted in recipients, not rows
    assert (report["counts"]["queued"], report["pending"]) == (9, 9)
    assert {d["domain"]: d["queued"] for d in report["domains"]} == {"example.org": 7,
                                                                     "other.org": 2}
    assert deliver_pending(site, now) == {"sent": 9, "deferred": 0, "bounced": 0, "failed": 0}
    assert sorted(sink.recipients()) == sorted(addresses)
    assert sorted(len(caught.rcpt_tos) for caught in sink.caught) == [1, 2, 3, 3]
    assert {status for _, status, _ in recipient_rows(site).values()} == {"sent"}
    assert deliver_pending(site, now + timedelta(hours=1))["sent"] == 0
    assert queue_report(site.db, now)["counts"]["sent"] == 9


def test_queuing_a_fan_out_again_after_a_member_joined_reaches_only_the_newcomer(site, now):
    addresses = [f"m{n}@example.org" for n in range(5)]
    forum = make_forum(site, now, *addresses)
    assert fan_out(site, now, forum, batch=2) == 5
    members.add(site.db, "peace", "a0@example.org", now=now, languages=("en",))  # sorts first
    assert fan_out(site, now, forum, batch=2) == 1
    assert sorted(r[0] for r in site.db.execute("SELECT recipient FROM delivery_recipients")) \
        == sorted(addresses + ["a0@example.org"])


def test_a_batch_member_refused_for_now_or_for_good_gets_a_row_of_their_own(site, sink, now):
    addresses = ["ana@example.org", "ben@example.org", "cleo@example.org", "dan@example.org"]
    forum = make_forum(site, now, *addresses)
    answers = {"ben@example.org": "550 5.1.1 no such user",
               "dan@example.org": "450 4.2.1 try again later"}
    sink.handler.answer = lambda rcpt: answers.get(rcpt)
    fan_out(site, now, forum, batch=100)
    (batch_id,) = [r[0] for r in site.db.execute("SELECT id FROM deliveries")]
    assert deliver_pending(site, now) == {"sent": 2, "deferred": 1, "bounced": 1, "failed": 0}
    found = recipient_rows(site)
    assert found["ana@example.org"] == found["cleo@example.org"] == (batch_id, "sent", 1)
    assert found["ben@example.org"][1:] == ("bounced", 1)
    assert found["dan@example.org"][1:] == ("deferred", 1)
    assert len({found[a][0] for a in addresses}) == 3  # the batch, and one row each
    (bounce,) = site.db.query("SELECT * FROM bounces")
    assert (bounce["recipient"], bounce["delivery_id"], bounce["forum_id"]) == \
        ("ben@example.org", found["ben@example.org"][0], forum["id"])
    answers.clear()
    assert deliver_pending(site, now + timedelta(seconds=1)) == \
        {"sent": 1, "deferred": 0, "bounced": 0, "failed": 0}
    assert sorted(sink.recipients()) == ["ana@example.org", "cleo@example.org",
                                         "dan@example.org"]  # nobody twice
    assert recipient_rows(site)["dan@example.org"][1:] == ("sent", 2)


def test_a_batch_whose_members_all_bounce_keeps_one_and_splits_the_rest(site, sink, now):
    addresses = ["ana@example.org", "ben@example.org", "cleo@example.org"]
    forum = make_forum(site, now, *addresses)
    sink.handler.answer = lambda rcpt: "550 5.1.1 no such user"
    fan_out(site, now, forum, batch=100)
    assert deliver_pending(site, now) == {"sent": 0, "deferred": 0, "bounced": 3, "failed": 0}
    rows_ = list(site.db.query("SELECT id, recipient, size, recipients, status FROM deliveries"))
    assert sorted((r["recipient"], r["size"], r["recipients"], r["status"]) for r in rows_) == [
        (a, 1, None, "bounced") for a in addresses]
    assert sorted((b["recipient"], b["delivery_id"]) for b in site.db.query(
        "SELECT * FROM bounces")) == sorted((r["recipient"], r["id"]) for r in rows_)


def test_an_unusable_address_in_a_batch_fails_alone(site, sink, now):
    forum = make_forum(site, now, "ana@example.org", "ben@example.org")
    site.db.execute("INSERT INTO members (forum_id, address, domain, language, joined_at) "
                    "VALUES (?, 'no\r\nbody@example.org', 'example.org', 'en', ?)",
                    [forum["id"], now.isoformat()])
    site.db.conn.commit()
    fan_out(site, now, forum, batch=100)
    assert deliver_pending(site, now) == {"sent": 2, "deferred": 0, "bounced": 0, "failed": 1}
    found = {r["recipient"]: (r["status"], r["last_error"])
             for r in site.db.query("SELECT * FROM delivery_recipients")}
    assert found["no\r\nbody@example.org"][0] == "failed"
    assert "cannot be used as an address" in found["no\r\nbody@example.org"][1]
    assert sorted(sink.recipients()) == ["ana@example.org", "ben@example.org"]


def test_batches_queued_before_verp_was_set_go_one_recipient_each(tmp_path, sink, now):
    site = Site(write_site(tmp_path / "site", sink.port))
    forum = make_forum(site, now, "ana@example.org", "ben@example.org", "cleo@example.org")
    fan_out(site, now, forum, batch=100)
    site.db.conn.close()
    verp = Site(write_site(tmp_path / "site", sink.port, extra="verp = true\n"))
    assert deliver_pending(verp, now)["sent"] == 3
    assert sorted(len(caught.rcpt_tos) for caught in sink.caught) == [1, 1, 1]
    assert len({caught.mail_from for caught in sink.caught}) == 3
    assert sorted((r["recipient"], r["size"], r["status"]) for r in verp.db.query(
        "SELECT * FROM deliveries")) == [("ana@example.org", 1, "sent"),
                                         ("ben@example.org", 1, "sent"),
                                         ("cleo@example.org", 1, "sent")]


def test_a_temporary_refusal_is_retried_and_then_delivered(site, sink, now):
    busy = {"ben@example.org"}
    sink.handler.answer = lambda rcpt: "450 4.2.1 try again later" if rcpt in busy else None
    queue(site, now, ["ana@example.org", "ben@example.org"])
    assert deliver_pending(site, now)["deferred"] == 1
    ben = rows(site)["ben@example.org"]
    assert (ben["status"], ben["attempts"]) == ("deferred", 1)
    assert ben["next_at"] == now.timestamp() + 1  # retry_schedule ["1s", "2s"]
    assert "450" in ben["last_error"]
    busy.clear()
    assert deliver_pending(site, now + timedelta(seconds=0.5))["sent"] == 0  # not due yet
    assert deliver_pending(site, now + timedelta(seconds=1))["sent"] == 1
    assert statuses(site) == {"ana@example.org": "sent", "ben@example.org": "sent"}
    assert sink.recipients().count("ben@example.org") == 1


def test_later_retries_wait_longer_and_the_last_wait_repeats(site, sink, now):
    sink.handler.answer = lambda rcpt: "451 4.3.0 later"
    queue(site, now, ["ana@example.org"])
    waits = []
    at = now.timestamp()
    for _ in range(3):
        deliver_pending(site, at)
        row = rows(site)["ana@example.org"]
        waits.append(row["next_at"] - at)
        at = row["next_at"]
    assert waits == [1, 2, 2]


def test_a_5xx_recipient_is_bounced_while_the_others_in_its_transaction_are_sent(site, sink,
                                                                                 now):
    forum = make_forum(site, now, "ana@example.org", "ben@example.org", "carol@example.org")
    sink.handler.answer = lambda rcpt: "550 5.1.1 no such user" if rcpt.startswith("ben") \
        else None
    queue(site, now, ["ana@example.org", "ben@example.org", "carol@example.org"],
          forum_id=forum["id"])
    assert deliver_pending(site, now) == {"sent": 2, "deferred": 0, "bounced": 1, "failed": 0}
    (caught,) = sink.caught
    assert sorted(caught.rcpt_tos) == ["ana@example.org", "carol@example.org"]
    assert statuses(site)["ben@example.org"] == "bounced"
    (bounce,) = site.db.query("SELECT * FROM bounces")
    assert (bounce["recipient"], bounce["code"], bounce["forum_id"]) == \
        ("ben@example.org", 550, forum["id"])
    assert bounce["delivery_id"] == rows(site)["ben@example.org"]["id"]
    assert "no such user" in bounce["detail"]
    counts = {m["address"]: m["bounces"] for m in site.db.query("SELECT * FROM members")}
    assert counts == {"ana@example.org": 0, "ben@example.org": 1, "carol@example.org": 0}


def test_a_5xx_to_data_fails_the_message_without_blaming_every_member(site, sink, now):
    sink.handler.data_answer = lambda rcpts: "554 5.7.1 content refused"
    queue(site, now, ["ana@example.org", "ben@example.org"])
    assert deliver_pending(site, now) == {"sent": 0, "deferred": 0, "bounced": 0, "failed": 2}
    assert sink.caught == []
    assert site.db.execute("SELECT count(*) FROM bounces").fetchone()[0] == 0
    reasons = {r["last_error"] for r in site.db.query("SELECT last_error FROM deliveries")}
    assert reasons == {"the message was refused: 554 5.7.1 content refused"}


def test_a_5xx_to_data_for_a_lone_recipient_is_that_recipients_bounce(site, sink, now):
    sink.handler.data_answer = lambda rcpts: "552 5.2.2 mailbox full"
    queue(site, now, ["ana@example.org"])
    assert deliver_pending(site, now)["bounced"] == 1
    assert site.db.execute("SELECT count(*) FROM bounces").fetchone()[0] == 1


def test_rows_still_refused_after_give_up_after_are_failed(site, sink, now):
    sink.handler.answer = lambda rcpt: "452 4.2.2 mailbox full"
    queue(site, now, ["ana@example.org"])
    deliver_pending(site, now)
    assert statuses(site) == {"ana@example.org": "deferred"}
    assert deliver_pending(site, now + timedelta(minutes=1))["failed"] == 1  # give_up_after 1m
    row = rows(site)["ana@example.org"]
    assert row["status"] == "failed"
    assert row["last_error"].startswith("gave up after 1m: 452")
    assert deliver_pending(site, now + timedelta(hours=1)) == \
        {"sent": 0, "deferred": 0, "bounced": 0, "failed": 0}


def test_a_refused_connection_defers_its_route_while_another_route_delivers(tmp_path, sink, now):
    dead = free_port()  # nothing listens here
    site = Site(write_site(tmp_path / "site", sink.port,
                           extra=f'routes = {{ "dead.example" = "127.0.0.1:{dead}" }}\n'))
    queue(site, now, ["x@dead.example", "y@dead.example", "ana@example.org"])
    queue(site, now, ["z@dead.example", "ben@example.org"], ref="post:2")
    result = deliver_pending(site, now)
    assert (result["sent"], result["deferred"]) == (2, 3)
    assert sorted(sink.recipients()) == ["ana@example.org", "ben@example.org"]
    for address in ("x@dead.example", "y@dead.example", "z@dead.example"):
        row = rows(site)[address]
        assert row["status"] == "deferred"
        assert "cannot connect" in row["last_error"]
        assert row["next_at"] > now.timestamp()


def test_a_destination_answering_421_is_deferred_while_the_smarthost_delivers(tmp_path, sink,
                                                                             now):
    with running_sink() as closing:
        closing.handler.answer = lambda rcpt: "421 4.3.2 shutting down"
        site = Site(write_site(tmp_path / "site", sink.port,
                               extra=f'routes = {{ "busy.example" = '
                                     f'"127.0.0.1:{closing.port}" }}\n'))
        queue(site, now, ["x@busy.example", "ana@example.org"])
        deliver_pending(site, now)
        assert closing.caught == []
    assert sink.recipients() == ["ana@example.org"]
    row = rows(site)["x@busy.example"]
    assert row["status"] == "deferred" and "421" in row["last_error"]


def test_a_destination_that_never_answers_does_not_hold_up_the_others(tmp_path, sink):
    silent = socket.socket()  # accepts connections, never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    site = Site(write_site(tmp_path / "site", sink.port,
                           extra=f'routes = {{ "slow.example" = '
                                 f'"127.0.0.1:{silent.getsockname()[1]}" }}\n'
                                 f"concurrency = 2\n"))
    now = datetime.now(timezone.utc) - timedelta(seconds=1)
    for ref in ("post:1", "post:2", "post:3"):  # three transactions, first in the queue
        queue(site, now, ["s1@slow.example", "s2@slow.example"], ref=ref)
    queue(site, now + timedelta(seconds=0.5), ["ana@example.org"], ref="post:4")
    site.start_writer()
    engine = EngineThread(site).start()
    try:
        sink.wait_for_recipient("ana@example.org", timeout=8)
        assert "sending" in {row["status"] for row in site.db.query(  # still waiting on it
            "SELECT status FROM deliveries WHERE domain = 'slow.example'")}
    finally:
        engine.stop()
        site.stop_writer()
        silent.close()
    assert sorted(row["status"] for row in site.db.query(
        "SELECT status FROM deliveries WHERE domain = 'slow.example'")) == ["queued"] * 6
    assert statuses(site)["ana@example.org"] == "sent"


class EngineThread:
    """run_delivery on an event loop of its own, as `serve` runs it."""

    def __init__(self, site, grace: float = 0.2):
        self.site, self.grace = site, grace
        self.ready = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self):
        self.loop = asyncio.get_running_loop()
        self.stop_event, self.wake_event = asyncio.Event(), asyncio.Event()
        self.ready.set()
        await run_delivery(self.site, self.stop_event, self.wake_event, grace=self.grace)

    def start(self) -> EngineThread:
        self.thread.start()
        self.ready.wait(5)
        return self

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self.wake_event.set)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_running_workers_send_what_is_queued_while_they_run(site, sink):
    site.start_writer()
    engine = EngineThread(site).start()
    try:
        now = datetime.now(timezone.utc)
        site.write_now(queue_message, "post:1", BODY, ["ana@example.org"], SENDER, now)
        engine.wake()
        started = time.monotonic()
        sink.wait_for_recipient("ana@example.org", timeout=5)
        assert time.monotonic() - started < 0.9  # woken, not the once-a-second poll
        site.write_now(queue_message, "post:2", BODY, ["ben@example.org"], SENDER, now)
        sink.wait_for_recipient("ben@example.org", timeout=5)  # found by the poll
    finally:
        engine.stop()
        site.stop_writer()
    assert set(statuses(site).values()) == {"sent"}
    assert len(sink.caught) == 2


def test_without_a_smarthost_the_outbox_maildir_gets_the_message(tmp_path, now):
    site = Site(write_site(tmp_path / "site"))
    queue(site, now, ["ana@example.org", "ben@example.net"])
    assert deliver_pending(site, now)["sent"] == 2
    box = mailbox.Maildir(site.outbox, create=False)
    (message,) = list(box)
    assert message["Return-Path"] == f"<{SENDER}>"
    assert sorted(message.get_all("X-Listserv-Envelope-To")) == ["<ana@example.org>",
                                                                "<ben@example.net>"]
    assert message["Subject"] == "[peace] Water"
    assert message.get_payload() == "Wells for the valley.\n"
    assert not list((site.outbox / "tmp").iterdir())


def test_verp_gives_each_recipient_an_envelope_sender_of_their_own(tmp_path, sink, now):
    site = Site(write_site(tmp_path / "site", sink.port, extra="verp = true\n"))
    queue(site, now, ["ana@example.org", "ben+news@example.org"])
    deliver_pending(site, now)
    assert sorted(len(caught.rcpt_tos) for caught in sink.caught) == [1, 1]
    for caught in sink.caught:  # FORUM-bounces+TOKEN: the token names this copy's row
        local, _, domain = caught.mail_from.partition("@")
        slug, row_id = read_bounce_token(site.secret, local)
        (recipient,) = site.db.execute("SELECT recipient FROM deliveries WHERE id = ?",
                                       [row_id]).fetchone()
        assert (slug, domain, [recipient]) == ("peace", "lists.example.org", caught.rcpt_tos)


def test_personal_bodies_carry_each_recipients_own_unsubscribe_links(tmp_path, sink, now):
    site = Site(write_site(tmp_path / "site", sink.port,
                           extra='[web]\nurl = "https://lists.example.org/"\n'))
    forum = make_forum(site, now)

    def work(db):
        body_id = store_body(db, "post:1", BODY, now, forum["id"], personal=True)
        enqueue(db, "post:1", body_id, ["ana@example.org", "ben@example.org"], SENDER, now)
    site.write_now(work)
    deliver_pending(site, now)
    assert sorted(len(caught.rcpt_tos) for caught in sink.caught) == [1, 1]
    for address in ("ana@example.org", "ben@example.org"):
        (copy,) = sink.messages_to(address)
        web, mailto = [part.strip().strip("<>") for part in copy["List-Unsubscribe"].split(",")]
        token = web.rpartition("/")[2]
        assert web == f"https://lists.example.org/unsubscribe/{token}"
        code = short_mac(site.secret, "leave", "peace", address)
        assert mailto == f"mailto:peace-leave+{code}@lists.example.org"
        assert read_link(site.secret, token) == ["u", "peace", address]
        assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert copy["Subject"] == "[peace] Water"


def test_personal_headers_without_a_web_address_offer_the_mail_link_only():
    lines = personal_headers(b"k" * 32, "", "peace", "lists.example.org", "ana@example.org")
    assert lines.startswith(b"List-Unsubscribe: <mailto:peace-leave+")
    assert lines.endswith(b"@lists.example.org>\r\n")
    assert b"List-Unsubscribe-Post" not in lines


def test_rows_left_sending_by_a_crash_go_out_once_after_recover(site, sink, now):
    queue(site, now, ["ana@example.org", "ben@example.org"])
    groups, _bodies = site.write_now(lambda db: claim(db, Router(site.settings.delivery),
                                                      now.timestamp(), rows=400, batch_size=100))
    assert [sorted(group.recipients) for group in groups] == [["ana@example.org",
                                                               "ben@example.org"]]
    # the process dies here: nothing was sent, the rows stay claimed
    assert deliver_pending(site, now)["sent"] == 0
    assert set(statuses(site).values()) == {"sending"}
    assert site.write_now(recover) == 2
    assert set(statuses(site).values()) == {"queued"}
    deliver_pending(site, now)
    assert sorted(sink.recipients()) == ["ana@example.org", "ben@example.org"]


def test_a_claim_batches_per_body_and_keeps_each_destinations_limit(tmp_path, now):
    site = Site(write_site(tmp_path / "site",  # no smarthost: the outbox, and one route
                           extra='routes = { "b.org" = "127.0.0.1:2525" }\n'))
    first = [f"{name}@a.org" for name in "pqrst"] + ["u@b.org", "v@b.org", "w@b.org",
                                                       "x@c.org", "y@c.org"]

    def work(db):
        for ref, recipients in (("post:1", first), ("post:2", ["z@a.org"])):
            enqueue(db, ref, store_body(db, ref, BODY, now), recipients, SENDER, now)
    site.write_now(work)
    groups, bodies = site.write_now(lambda db: claim(
        db, Router(site.settings.delivery), now.timestamp(), rows=100, batch_size=4,
        limits={"127.0.0.1:2525": 2}))
    by_place: dict = {}
    for group in groups:
        assert len(group.ids) == len(group.recipients) <= 4
        by_place.setdefault((group.body_id, group.destination), []).append(group.recipients)
    assert set(bodies) == {1, 2}
    # The outbox takes every domain of a body together, four to a transaction.
    outbox = by_place[(1, "maildir")]
    assert sorted(map(len, outbox)) == [3, 4]
    assert sorted(r for batch in outbox for r in batch) == sorted(
        r for r in first if not r.endswith("@b.org"))
    assert by_place[(2, "maildir")] == [["z@a.org"]]
    # The route's limit is two rows: the third waits for the next claim.
    (routed,) = by_place[(1, "127.0.0.1:2525")]
    assert len(routed) == 2 and set(routed) < {"u@b.org", "v@b.org", "w@b.org"}
    left = {recipient for recipient, status in statuses(site).items() if status == "queued"}
    assert left == {"u@b.org", "v@b.org", "w@b.org"} - set(routed)
    assert sum(1 for status in statuses(site).values() if status == "sending") == 10
    # Each claimed row's recipient is the one its group carries it for.
    ids = {row["id"]: row["recipient"] for row in site.db.query("SELECT * FROM deliveries")}
    for group in groups:
        assert [ids[i] for i in group.ids] == group.recipients


def test_a_message_that_cannot_be_sent_is_set_aside_and_the_rest_goes_on(site, sink, now):
    def work(db):
        body_id = store_body(db, "bad:1", 12345, now)  # not a message at all
        enqueue(db, "bad:1", body_id, ["ana@example.org"], SENDER, now)
    site.write_now(work)
    queue(site, now, ["ben@example.org", "no body@example.org"], ref="post:2")
    assert deliver_pending(site, now) == {"sent": 1, "deferred": 0, "bounced": 0, "failed": 2}
    failed = {r: row["last_error"] for r, row in rows(site).items() if row["status"] == "failed"}
    assert "not a message" in failed["ana@example.org"]
    assert "cannot be used as an address" in failed["no body@example.org"]
    assert sink.recipients() == ["ben@example.org"]
    assert deliver_pending(site, now + timedelta(hours=1))["failed"] == 0  # never tried again


def test_a_message_failing_for_reasons_of_its_own_is_set_aside_after_a_few_tries(site, sink,
                                                                                  now):
    site.write_now(queue_message, "post:1", BODY, ["ana@example.org"],
                   "peace bounces@lists.example.org", now)  # no SMTP server takes this
    at = now.timestamp()
    for _ in range(3):
        deliver_pending(site, at)
        at = rows(site)["ana@example.org"]["next_at"]
    row = rows(site)["ana@example.org"]
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert row["last_error"].startswith("set aside after 3 tries: internal error: ValueError")
    assert deliver_pending(site, at + 3600)["failed"] == 0
    assert sink.caught == []


def test_an_internationalised_address_goes_out_with_smtputf8(site, sink, now):
    queue(site, now, ["josé@example.org"])
    assert deliver_pending(site, now)["sent"] == 1
    assert sink.recipients() == ["josé@example.org"]


def test_queue_report_shows_statuses_domains_and_deferred_rows_as_json(site, sink, now):
    sink.handler.answer = lambda rcpt: {"ben@example.org": "450 4.2.1 later",
                                        "carol@example.net": "550 5.1.1 unknown"}.get(rcpt)
    queue(site, now, ["ana@example.org", "ben@example.org", "carol@example.net"])
    queue(site, now, ["dan@example.org"], ref="post:2")
    deliver_pending(site, now)
    queue(site, now, ["eve@example.org"], ref="post:3")
    report = queue_report(site.db, now)
    json.dumps(report)
    assert report["counts"] == {"queued": 1, "sending": 0, "deferred": 1, "sent": 2,
                                "bounced": 1, "failed": 0}
    assert report["pending"] == 1
    (deferred,) = report["deferred"]
    assert deferred["recipient"] == "ben@example.org"
    assert deferred["next_try"] == (now + timedelta(seconds=1)).isoformat()
    assert "450" in deferred["last_error"]
    domains = {entry["domain"]: entry for entry in report["domains"]}
    assert domains["example.org"] == {"domain": "example.org", "queued": 1, "deferred": 1}
    assert domains["example.net"] == {"domain": "example.net", "bounced": 1}
    assert [b["recipient"] for b in report["bounces"]] == ["carol@example.net"]
