"""No backscatter: addresses with a code are checked at RCPT, automatic replies
are limited per recipient, and null senders, auto-replies and list traffic
are never answered. Through a running server and a real sink."""

from __future__ import annotations

import email.utils
import secrets
import smtplib
import time

import pytest
from helpers import Server, listserv, make_site, query, running_sink, send_mail, wait_until

DOMAIN = "lists.example.org"
VICTIM = "victim@example.net"


def letter(to: str, sender: str, subject: str = "", body: str = "", extra: str = "") -> str:
    """A short message as Gmail's web client writes it (plain text part only)."""
    stamp = secrets.token_hex(6)
    return (f"From: {sender}\nTo: {to}\nSubject: {subject}\n"
            f"Date: Mon, 23 Nov 2026 09:00:00 +0000\n"
            f"Message-ID: <CA+{stamp}@mail.gmail.com>\nMIME-Version: 1.0\n"
            f'Content-Type: text/plain; charset="UTF-8"\n{extra}\n{body}\n')


@pytest.fixture
def served(tmp_path):
    with running_sink() as sink:
        site = make_site(tmp_path, sink, web_url="https://lists.example.org")  # personal copies
        config = site / "listserv.toml"
        text = config.read_text().replace('confirm_lifetime = "7d"', 'confirm_lifetime = "3s"')
        config.write_text(text.replace("max_replies_per_hour = 10", "max_replies_per_hour = 3"))
        listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
                 "--no-charter", site=site)
        listserv("member", "add", "peace", "ana@example.org", "--preconfirmed", site=site)
        server = Server(site).start()
        try:
            yield site, sink, server
        finally:
            output = server.stop()
            assert "Traceback" not in output, output[-3000:]


def rcpt_replies(port: int, mail_from: str, recipients: list[str]) -> list[tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("forger.example.net")
        assert client.mail(mail_from)[0] == 250
        return [client.rcpt(address) for address in recipients]


def test_a_thousand_random_confirm_tokens_from_a_forged_sender_give_no_mail(served):
    site, sink, server = served
    tokens = [secrets.token_hex(16) for _ in range(1000)]
    replies = rcpt_replies(server.port, VICTIM,
                           [f"peace-confirm+{token}@{DOMAIN}" for token in tokens])
    assert {code for code, _ in replies} == {550}
    assert all(b"no such confirmation code" in text for _, text in replies)
    replies = rcpt_replies(server.port, VICTIM, [
        f"whatsnew-confirm+{secrets.token_hex(16)}@{DOMAIN}",
        f"templates+{secrets.token_hex(16)}@{DOMAIN}",
        f"peace-leave+{secrets.token_hex(8)}@{DOMAIN}"])
    assert [code for code, _ in replies] == [550, 550, 550], replies
    time.sleep(2)
    assert query(site, "SELECT count(*) FROM messages") == [(0,)]
    assert sink.caught == []


def test_a_token_of_two_kilobytes_gets_a_clear_refusal_and_nothing_is_stored(served):
    site, sink, server = served
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo()
        client.mail(VICTIM)
        code, text = client.rcpt(f"peace-confirm+{'a' * 2048}@{DOMAIN}")
        assert code >= 500 and text, (code, text)
        assert client.noop()[0] == 250  # the session goes on
    assert query(site, "SELECT count(*) FROM messages") == [(0,)]


def confirm_address(sink, address: str) -> str:
    (request,) = sink.wait_for_recipient(address)
    _, reply_to = email.utils.parseaddr(str(request["Reply-To"]))
    assert reply_to.startswith("peace-confirm+"), reply_to
    return reply_to


def test_a_spent_token_is_refused_at_rcpt_and_answered_by_nobody(served):
    site, sink, server = served
    carla = "carla@example.org"
    send_mail(server.port, carla, [f"peace-request@{DOMAIN}"],
              letter(f"peace-request@{DOMAIN}", carla, "subscribe"))
    address = confirm_address(sink, carla)
    send_mail(server.port, carla, [address], letter(address, carla, "Re: confirm", "yes"))
    wait_until(lambda: query(site, "SELECT count(*) FROM members WHERE address = ?",
                             (carla,)) == [(1,)], what="carla to become a member")
    sink.wait_for_recipient(carla, count=2)  # the request and the welcome
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send_mail(server.port, VICTIM, [address], letter(address, VICTIM, "Re: confirm"))
    code, text = refused.value.recipients[address]
    assert code == 550 and b"already used on" in text
    time.sleep(1)
    assert VICTIM not in sink.recipients() and len(sink.messages_to(carla)) == 2


def test_a_token_that_was_valid_but_expired_is_refused_at_rcpt(served):
    site, sink, server = served
    dora = "dora@example.org"
    send_mail(server.port, dora, [f"peace-join@{DOMAIN}"], letter(f"peace-join@{DOMAIN}", dora))
    address = confirm_address(sink, dora)
    assert rcpt_replies(server.port, dora, [address])[0][0] == 250  # valid while it lasts
    time.sleep(3.5)  # [moderation] confirm_lifetime = "3s" here
    ((code, text),) = rcpt_replies(server.port, dora, [address])
    assert code == 550 and b"expired on" in text
    assert query(site, "SELECT count(*) FROM members WHERE address = ?", (dora,)) == [(0,)]


def test_a_members_own_leave_address_works_for_that_member_only(served):
    site, sink, server = served
    send_mail(server.port, "ben@example.org", [f"peace@{DOMAIN}"],
              letter(f"peace@{DOMAIN}", "ana@example.org", "Water", "A post."))
    (copy,) = sink.wait_for_recipient("ana@example.org")
    leave = str(copy["List-Unsubscribe"]).split("mailto:")[1].split(">")[0]
    assert leave.startswith("peace-leave+")
    ((code, _),) = rcpt_replies(server.port, VICTIM, [leave])
    assert code == 550
    send_mail(server.port, "ana@example.org", [leave], letter(leave, "Ana <ana@example.org>"))
    wait_until(lambda: query(site, "SELECT count(*) FROM members") == [(0,)],
               what="ana to leave by her own address")


def test_a_null_sender_to_request_is_accepted_and_never_answered(served):
    site, sink, server = served
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo()
        assert client.mail("<>")[0] == 250
        assert client.rcpt(f"peace-request@{DOMAIN}")[0] == 250
        raw = letter(f"peace-request@{DOMAIN}", f"Mail Delivery <{VICTIM}>", "help", "help")
        assert client.data(raw.replace("\n", "\r\n").encode())[0] == 250
    wait_until(lambda: query(site, "SELECT status FROM messages") == [("done",)],
               what="the message to be handled")
    time.sleep(1)
    assert sink.caught == []


@pytest.mark.parametrize("extra", [
    "Auto-Submitted: auto-replied\n",
    "List-Id: Water network <water.lists.example.net>\n"
    "List-Unsubscribe: <mailto:water-leave@lists.example.net>\n",
])
def test_automatic_mail_and_list_traffic_to_request_get_no_reply(served, extra):
    site, sink, server = served
    send_mail(server.port, VICTIM, [f"peace-request@{DOMAIN}"],
              letter(f"peace-request@{DOMAIN}", VICTIM, "help", "help", extra))
    wait_until(lambda: query(site, "SELECT status FROM messages") == [("done",)],
               what="the message to be handled")
    time.sleep(1)
    assert sink.caught == []


def test_automatic_replies_to_one_address_stop_at_the_hourly_limit(served):
    site, sink, server = served
    for n in range(6):
        send_mail(server.port, VICTIM, [f"peace-request@{DOMAIN}"],
                  letter(f"peace-request@{DOMAIN}", VICTIM, "help", f"help {n}"))
    wait_until(lambda: query(site, "SELECT count(*) FROM messages WHERE status = 'done'")
               == [(6,)], what="six messages handled")
    time.sleep(1.5)
    assert len(sink.messages_to(VICTIM)) == 3  # [site] max_replies_per_hour = 3
    assert server.output().count("not sent: 3 already in the last hour") == 3


def dsn_naming(member: str, to: str) -> str:
    """A well-formed RFC 3464 report that says `member` failed."""
    return (f"From: MAILER-DAEMON@mx.example.org\nTo: {to}\nSubject: Undelivered Mail\n"
            f"Date: Mon, 23 Nov 2026 09:00:00 +0000\nMessage-ID: <{secrets.token_hex(6)}@mx>\n"
            "MIME-Version: 1.0\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
            "--b\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
            "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
            f"Final-Recipient: rfc822; {member}\nAction: failed\nStatus: 5.1.1\n"
            "Diagnostic-Code: smtp; 550 5.1.1 no such user\n\n--b--\n")


def test_a_forged_bounce_token_is_refused_at_rcpt_and_nothing_is_stored(served):
    site, sink, server = served
    forged = [f"peace-bounces+{secrets.randbelow(10**6):x}.{'a' * 16}@{DOMAIN}",
              f"peace-bounces+1.abcdefghijklmnop@{DOMAIN}", f"peace-bounces+nonsense@{DOMAIN}",
              f"peace-bounces+{'x' * 300}@{DOMAIN}"]
    replies = rcpt_replies(server.port, "", forged)
    assert {code for code, _ in replies} == {550}, replies
    assert all(b"no such bounce address" in text for _, text in replies)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_mail(server.port, "", [forged[0]], dsn_naming("ana@example.org", forged[0]))
    time.sleep(2)
    assert query(site, "SELECT count(*) FROM messages") == [(0,)]
    assert query(site, "SELECT bounce_score FROM members") == [(0,)]
    assert sink.caught == []


def test_a_report_to_the_bare_bounce_address_is_taken_and_never_counts(served):
    site, sink, server = served
    send_mail(server.port, "", [f"peace-bounces@{DOMAIN}"],
              dsn_naming("ana@example.org", f"peace-bounces@{DOMAIN}"))
    wait_until(lambda: query(site, "SELECT count(*) FROM messages WHERE status != 'new'")
               == [(1,)], what="the report to be read")
    time.sleep(1)
    assert query(site, "SELECT bounce_score FROM members") == [(0,)]
    assert query(site, "SELECT count(*) FROM bounces") == [(0,)]
    assert sink.caught == []
