"""Moderation by email reply, end to end: `listserv serve`, SMTP in, a sink out.

A held post's notice arrives at the sink; the test replies to the address
found in it, as a facilitator's mail client would lay out the reply, and
reads the outcome where people see it: at the sink, in `listserv held log`.
"""

from __future__ import annotations

import json
import smtplib
import threading
import time

import pytest
from facilitation import (
    DOMAIN,
    FAC,
    FAC2,
    MEMBERS,
    ZOE,
    forum_site,
    letter,
    notices_to,
    post,
    query,
    reply,
    reply_address,
    set_moderation,
    text_of,
    wait_notice,
    wait_until,
)
from helpers import Server, listserv, query, send_mail

POST_TO = [f"peace@{DOMAIN}"]


@pytest.fixture
def peace(tmp_path, sink):
    return forum_site(tmp_path, sink)


@pytest.fixture
def served(peace):
    server = Server(peace).start()
    yield peace, server
    output = server.stop()
    assert "Traceback" not in output, output[-3000:]


def decisions(folder) -> list[dict]:
    return json.loads(listserv("held", "log", "--json", site=folder).stdout)


def hold_status(folder) -> str:
    return query(folder, "SELECT status FROM holds ORDER BY id")[0][0]


def test_a_facilitator_approves_by_reply_and_every_member_gets_the_post_once(served, sink):
    folder, server = served
    send_mail(server.port, ZOE, POST_TO, post())
    notice = wait_notice(sink, FAC)
    assert notices_to(sink, FAC2, "Held for your decision")  # every facilitator is told
    assert notice["Subject"] == "[peace] Held for your decision: Water"
    text = text_of(notice)
    assert "Zoe <zoe@example.net>  (not a member)" in text
    assert "Held for:  zoe@example.net is not a member of this forum" in text
    assert "| Clean water for every village." in text
    (original,) = notice.iter_attachments()
    assert original.get_content_type() == "message/rfc822"
    assert original.get_content()["Subject"] == "Water"
    assert sink.messages_to("ben@example.net") == []
    address, raw = reply(notice, "approve")
    send_mail(server.port, FAC, [address], raw)
    for member in MEMBERS:
        (copy,) = sink.wait_for_recipient(member)
    assert copy["Subject"] == "[peace] Water"
    done = wait_notice(sink, FAC, "Done: approve")
    assert "was approved" in text_of(done)
    (entry,) = decisions(folder)
    assert (entry["decision"], entry["decided_by"], entry["decided_via"]) == \
        ("approve", FAC, "email")
    time.sleep(0.5)
    assert len(sink.messages_to("ben@example.net")) == 1


def test_reject_typed_above_a_quoted_notice_that_says_approve_rejects_and_the_poster_gets_the_reason_in_their_language(
        served, sink):
    folder, server = served
    listserv("member", "add", "peace", "dora@example.org", "--language", "fr", "--preconfirmed",
             site=folder)
    listserv("forum", "edit", "peace", "--probation", "1", site=folder)
    send_mail(server.port, "dora@example.org", POST_TO, post("Dora <dora@example.org>"))
    notice = wait_notice(sink, FAC)
    assert "the first 1 posts of a new member are held" in text_of(notice)
    assert "approve" in text_of(notice)  # the reply below carries it, unquoted (Outlook)
    address, raw = reply(notice, "reject Off topic for this workshop", layout="outlook")
    send_mail(server.port, FAC, [address], raw)
    (told,) = sink.wait_for_recipient("dora@example.org")
    assert "n'a pas été retenu" in str(told["Subject"])
    assert "Off topic for this workshop" in text_of(told)
    wait_notice(sink, FAC, "Done: reject")
    assert hold_status(folder) == "rejected"
    assert sink.messages_to("ben@example.net") == []
    (entry,) = decisions(folder)
    assert entry["decision_reason"] == "Off topic for this workshop"


def test_discard_by_reply_tells_nobody_and_sends_nothing(served, sink):
    folder, server = served
    send_mail(server.port, ZOE, POST_TO, post())
    notice = wait_notice(sink, FAC)
    address, raw = reply(notice, "Discard", layout="apple")
    send_mail(server.port, FAC, [address], raw)
    wait_notice(sink, FAC, "Done: discard")
    assert hold_status(folder) == "discarded"
    assert sink.messages_to(ZOE) == [] and sink.messages_to("ben@example.net") == []


def test_accept_always_sends_the_post_and_the_senders_next_post_is_not_held(served, sink):
    folder, server = served
    send_mail(server.port, ZOE, POST_TO, post())
    notice = wait_notice(sink, FAC)
    address, raw = reply(notice, "accept-always", layout="thunderbird")
    send_mail(server.port, FAC, [address], raw)
    sink.wait_for_recipient("ben@example.net")
    (standing,) = json.loads(listserv("sender", "list", "peace", "--json", site=folder).stdout)
    assert (standing["address"], standing["standing"], standing["set_via"]) == \
        (ZOE, "accept", "email")
    send_mail(server.port, ZOE, POST_TO, post(subject="Wells", body="The new well runs.\n"))
    sink.wait_for_recipient("ben@example.net", count=2)
    assert len(held_rows := query(folder, "SELECT id FROM holds")) == 1, held_rows


def test_ban_drops_the_post_and_the_senders_next_post_silently(served, sink):
    folder, server = served
    send_mail(server.port, ZOE, POST_TO, post())
    notice = wait_notice(sink, FAC)
    address, raw = reply(notice, "ban", layout="iphone")
    send_mail(server.port, FAC, [address], raw)
    wait_notice(sink, FAC, "Done: ban")
    send_mail(server.port, ZOE, POST_TO, post(subject="Again", body="Buy now.\n"))
    wait_until(lambda: query(folder, "SELECT status, reason FROM posts WHERE subject = 'Again'")
               == [("ignored", f"{ZOE} is banned from this forum")], what="the banned post")
    time.sleep(0.5)
    assert len(query(folder, "SELECT id FROM holds")) == 1
    assert len(notices_to(sink, FAC, "Held for your decision")) == 1
    assert sink.messages_to(ZOE) == [] and sink.messages_to("ben@example.net") == []


def test_a_reply_from_someone_who_is_not_exactly_one_facilitator_changes_nothing(served, sink):
    folder, server = served
    send_mail(server.port, ZOE, POST_TO, post())
    notice = wait_notice(sink, FAC)
    address = reply_address(notice)
    senders = ("Mallory <mallory@example.net>",  # answered: only facilitators decide
               f'"{FAC}" <mallory@example.net>',  # a name that looks like an address: answered
               f"{FAC}, mallory@example.net",  # two authors: ambiguous, no answer
               f"Facilitators: {FAC};")  # group syntax, even of one: ambiguous, no answer
    for sender in senders:
        send_mail(server.port, "mallory@example.net", [address],
                  reply(notice, "approve", sender=sender)[1])
    wait_until(lambda: query(folder, "SELECT count(*) FROM messages WHERE status = 'done'")
               [0][0] >= 1 + len(senders), what="every reply handled")
    answers = sink.wait_for_recipient("mallory@example.net", count=2)
    assert all("mallory@example.net is not one of them" in " ".join(text_of(a).split())
               for a in answers)
    time.sleep(0.5)
    assert hold_status(folder) == "held"
    assert sink.messages_to("ben@example.net") == []
    assert len(sink.messages_to("mallory@example.net")) == 2
    sink.wait_for(lambda s: len(s.messages_to(FAC)) >= 2, 20, "the facilitator told")
    told = "[peace] Decision refused: mallory@example.net is not a facilitator"
    assert [m["Subject"] for m in sink.messages_to(FAC)] == [notice["Subject"], told]  # once
    output = server.stop()
    assert output.count("mallory@example.net is not a facilitator of peace; decision "
                        "refused") == 2


def refusal(port: int, sender: str, address: str, raw) -> tuple[int, str]:
    """What RCPT said to a reply address we do not take (the test fails if taken)."""
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send_mail(port, sender, [address], raw)
    code, text = refused.value.recipients[address]
    return code, text.decode()


def test_a_wrong_token_is_refused_at_rcpt_and_changes_nothing(served, sink):
    folder, server = served
    send_mail(server.port, ZOE, POST_TO, post())
    notice = wait_notice(sink, FAC)
    real = reply_address(notice)
    wrong = real.replace(real.split("+")[1][:6], "000000")
    _, raw = reply(notice, "approve", to=wrong)
    code, text = refusal(server.port, FAC, wrong, raw)
    assert code == 550 and "no such confirmation code" in text
    time.sleep(0.5)
    assert hold_status(folder) == "held"
    assert sink.messages_to("ben@example.net") == []
    assert len(sink.messages_to(FAC)) == 1  # the notice; no reply to a code we never issued


def test_a_replayed_token_is_refused_at_rcpt_with_when_it_was_used(served, sink):
    folder, server = served
    send_mail(server.port, ZOE, POST_TO, post())
    notice = wait_notice(sink, FAC)
    address, raw = reply(notice, "approve")
    send_mail(server.port, FAC, [address], raw)
    sink.wait_for_recipient("ben@example.net")
    _, again = reply(notice, "reject too late", sender=FAC2, layout="android")
    code, text = refusal(server.port, FAC2, address, again)
    # The day it says is the day the server spent the code, by its own clock.
    (used_at,) = query(folder, "SELECT used_at FROM tokens WHERE used_at IS NOT NULL "
                               "ORDER BY used_at DESC LIMIT 1")[0]
    assert code == 550 and f"already used on {used_at[:10]}" in text, (text, used_at)
    code, text = refusal(server.port, FAC, address, raw)  # the very same reply again
    assert code == 550 and "already used" in text
    time.sleep(0.5)
    assert hold_status(folder) == "approved"
    assert len(sink.messages_to("ben@example.net")) == 1 and sink.messages_to(ZOE) == []


def test_an_expired_token_is_refused_at_rcpt_and_the_command_line_still_decides(peace, sink):
    set_moderation(peace, token_lifetime="1s")
    server = Server(peace).start()
    try:
        send_mail(server.port, ZOE, POST_TO, post())
        notice = wait_notice(sink, FAC)
        time.sleep(1.2)
        address, raw = reply(notice, "approve")
        code, text = refusal(server.port, FAC, address, raw)
        assert code == 550 and "this code expired on" in text
        assert hold_status(peace) == "held"
        hold_id = query(peace, "SELECT id FROM holds")[0][0]
        listserv("held", "approve", str(hold_id), site=peace)
        sink.wait_for_recipient("ben@example.net")
    finally:
        output = server.stop()
    assert "this code expired on" in output


def test_two_facilitators_racing_the_first_decision_wins_and_the_second_is_told(served, sink):
    folder, server = served
    send_mail(server.port, ZOE, POST_TO, post())
    notice = wait_notice(sink, FAC)
    address, approve = reply(notice, "approve")
    _, reject = reply(notice, "reject spam", sender=FAC2)
    threads = [threading.Thread(target=send_mail, args=(server.port, who, [address], raw))
               for who, raw in ((FAC, approve), (FAC2, reject))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: notices_to(sink, FAC, "Already decided") or
               notices_to(sink, FAC2, "Already decided"), what="the loser's answer")
    (entry,) = decisions(folder)
    winner, loser = (FAC, FAC2) if entry["decided_by"] == FAC else (FAC2, FAC)
    (told,) = notices_to(sink, loser, "Already decided")
    assert f"by {winner} (email)" in text_of(told)
    assert notices_to(sink, winner, "Done: ")
    time.sleep(0.5)
    if entry["decision"] == "approve":
        assert len(sink.messages_to("ben@example.net")) == 1 and sink.messages_to(ZOE) == []
    else:
        assert sink.messages_to("ben@example.net") == [] and len(sink.messages_to(ZOE)) == 1


def test_an_approved_header_grants_nothing_and_never_reaches_the_members(served, sink):
    folder, server = served
    send_mail(server.port, ZOE, POST_TO,
              post(body="Approved: secret\n\nBuy cheap watches.\n", extra="Approved: secret\n"))
    notice = wait_notice(sink, FAC)
    assert hold_status(folder) == "held"
    address, raw = reply(notice, "approve")
    send_mail(server.port, FAC, [address], raw)
    (copy,) = sink.wait_for_recipient("ben@example.net")
    assert copy["Approved"] is None and copy["Approve"] is None


def test_with_authentication_required_only_a_trusted_dkim_pass_decides(peace, sink):
    set_moderation(peace, require_authentication=True, trusted_hosts=["mx.example.org"])
    server = Server(peace).start()
    try:
        send_mail(server.port, ZOE, POST_TO, post())
        notice = wait_notice(sink, FAC)
        address, bare = reply(notice, "approve")
        send_mail(server.port, FAC, [address], bare)
        wait_notice(sink, FAC, "not carried out")
        _, untrusted = reply(notice, "approve", extra="Authentication-Results: evil.example; "
                                                      "dkim=pass header.d=example.org\n")
        send_mail(server.port, FAC, [address], untrusted)
        wait_notice(sink, FAC, "not carried out", count=2)
        assert hold_status(peace) == "held"
        _, signed = reply(notice, "approve", extra="Authentication-Results: mx.example.org; "
                                                   "dkim=pass header.d=example.org header.s=s1\n")
        send_mail(server.port, FAC, [address], signed)
        sink.wait_for_recipient("ben@example.net")
    finally:
        output = server.stop()
    assert output.count("no trusted DKIM/DMARC pass for fac@example.org") == 2


def test_a_subscription_request_waits_for_a_facilitator_who_approves_it_by_reply(peace, sink):
    listserv("forum", "edit", "peace", "--subscription", "approve", site=peace)
    with_server = Server(peace).start()
    try:
        port = with_server.port
        send_mail(port, "dora@example.org", [f"peace-join@{DOMAIN}"],
                  letter("Dora <dora@example.org>", f"peace-join@{DOMAIN}", "join", ""))
        (confirmation,) = sink.wait_for_recipient("dora@example.org")
        confirm = str(confirmation["Reply-To"])
        send_mail(port, "dora@example.org", [confirm],
                  letter("Dora <dora@example.org>", confirm, "Re: confirm", "Yes, I accept.\n"))
        request = wait_notice(sink, FAC, "Subscription request: dora@example.org")
        assert "The alliance charter was accepted on" in text_of(request)
        address, raw = reply(request, "approve")
        send_mail(port, FAC, [address], raw)
        welcome = sink.wait_for_recipient("dora@example.org", count=3)[-1]
        assert "welcome" in str(welcome["Subject"]).lower()
    finally:
        with_server.stop()
    members = json.loads(listserv("member", "list", "peace", "--json", site=peace).stdout)
    (dora,) = [m for m in members if m["address"] == "dora@example.org"]
    assert dora["charter_accepted_at"]
    (row,) = json.loads(listserv("request", "list", "--all", "--json", site=peace).stdout)
    assert (row["status"], row["decided_by"], row["decided_via"]) == ("approved", FAC, "email")


def test_a_subscription_request_rejected_by_reply_tells_the_requester_why(peace, sink):
    listserv("forum", "edit", "peace", "--subscription", "approve", "--no-charter", site=peace)
    server = Server(peace).start()
    try:
        send_mail(server.port, "dora@example.org", [f"peace-join@{DOMAIN}"],
                  letter("dora@example.org", f"peace-join@{DOMAIN}", "join", ""))
        (confirmation,) = sink.wait_for_recipient("dora@example.org")
        confirm = str(confirmation["Reply-To"])
        send_mail(server.port, "dora@example.org", [confirm],
                  letter("dora@example.org", confirm, "Re: confirm", "yes\n"))
        request = wait_notice(sink, FAC, "Subscription request")
        address, raw = reply(request, "reject This network is for farmers", layout="outlook")
        send_mail(server.port, FAC, [address], raw)
        refusal = sink.wait_for_recipient("dora@example.org", count=3)[-1]
    finally:
        server.stop()
    assert "This network is for farmers" in text_of(refusal)
    members = json.loads(listserv("member", "list", "peace", "--json", site=peace).stdout)
    assert "dora@example.org" not in [m["address"] for m in members]
