"""Every copy has a Date and a Message-ID; replies say their language."""

from __future__ import annotations

from listserv.delivery.engine import deliver_pending
from listserv.delivery.notify import send_template
from listserv.delivery.queue import queue_message
from listserv.site import forums


def test_mail_passed_on_without_date_or_message_id_gets_both_at_hand_over(site, sink, now):
    raw = b"From: zoe@example.net\r\nTo: peace-owner@lists.example.org\r\nSubject: hi\r\n\r\nhi\r\n"
    site.write_now(queue_message, "owner:peace:1", raw, ["fac@example.org"],
                   "listserv-bounces@lists.example.org", now)
    kept = (b"From: zoe@example.net\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n"
            b"Message-ID: <kept@example.net>\r\nSubject: hi\r\n\r\nhi\r\n")
    site.write_now(queue_message, "owner:peace:2", kept, ["fac@example.org"],
                   "listserv-bounces@lists.example.org", now)
    deliver_pending(site, now)
    copies = {str(m["Subject"]) + str(m["Message-ID"]): m
              for m in sink.messages_to("fac@example.org")}
    assert len(copies) == 2
    for message in copies.values():
        assert message["Date"] and message["Message-ID"]
        assert len(message.get_all("Date")) == 1 and len(message.get_all("Message-ID")) == 1
    assert any(m["Message-ID"] == "<kept@example.net>" and
               m["Date"] == "Mon, 23 Nov 2026 08:00:00 +0000" for m in copies.values())


def test_replies_and_notices_carry_the_language_they_are_written_in(site, sink, now):
    forum = forums.create(site.db, "peace", title="Peace", path="thematic", now=now)
    for language in ("fr", "pt"):
        site.write_now(lambda db: send_template(
            db, site, "goodbye.txt", to=f"{language}@example.org", language=language,
            ref=f"goodbye:{language}", now=now, forum=forum, address=f"{language}@example.org",
            how="email", rejoin_address=""))
    deliver_pending(site, now)
    (french,) = sink.messages_to("fr@example.org")
    (portuguese,) = sink.messages_to("pt@example.org")
    assert (french["Content-Language"], portuguese["Content-Language"]) == ("fr", "pt")
    assert "quitté" in french["Subject"]
