"""Moderation inside a running `listserv serve`: kill -9 loses nothing, and the
scheduler sends reminders and escalations once, across a restart."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
from facilitation import (
    DOMAIN,
    FAC,
    MEMBERS,
    ZOE,
    forum_site,
    notices_to,
    post,
    query,
    reply,
    set_moderation,
    text_of,
    wait_notice,
    wait_until,
)
from helpers import Server, send_mail

POST_TO = [f"peace@{DOMAIN}"]
SECRETARIAT = "secretariat@example.org"


@pytest.fixture
def peace(tmp_path, sink):
    return forum_site(tmp_path, sink)


def test_kill_9_between_the_post_and_the_decision_loses_nothing_and_repeats_nothing(
        peace, sink):
    server = Server(peace).start()
    send_mail(server.port, ZOE, POST_TO, post())
    server.kill()  # at once after the 250: the hold may not even exist yet
    server = Server(peace).start()
    try:
        notice = wait_notice(sink, FAC)
        # Killed once the notice is recorded as sent: a kill between the sink's
        # 250 and that record may send it again (the documented crash window).
        wait_until(lambda: query(peace, "SELECT count(*) FROM deliveries WHERE "
                                        "recipient = ? AND status = 'sent'", [FAC])[0][0],
                   10, "the notice's delivery to be recorded")
    finally:
        server.kill()  # held and noticed, not decided
    assert query(peace, "SELECT status FROM holds") == [("held",)]
    server = Server(peace).start()
    try:
        address, raw = reply(notice, "approve")
        send_mail(server.port, FAC, [address], raw)
        for member in MEMBERS:
            sink.wait_for_recipient(member)
        wait_notice(sink, FAC, "Done: approve")
        time.sleep(1)
    finally:
        server.stop()
    copies = Counter(r for c in sink.caught for r in c.rcpt_tos
                     if "[peace] Water" in str(c.message["Subject"]))
    assert copies == Counter(MEMBERS)
    assert len(notices_to(sink, FAC, "Held for your decision")) == 1
    assert query(peace, "SELECT decided_via FROM holds") == [("email",)]


def test_the_scheduler_reminds_and_escalates_once_even_across_a_restart(peace, sink):
    set_moderation(peace, remind_after="1s", escalate_after="2s", check_every="1s")
    server = Server(peace).start()
    try:
        send_mail(server.port, ZOE, POST_TO, post())
        wait_notice(sink, FAC)
        summary = wait_notice(sink, FAC, "Reminder", timeout=15)
        escalation = wait_notice(sink, SECRETARIAT, "waited more than", timeout=15)
    finally:
        server.stop()
    assert summary["Subject"] == "[peace] Reminder: 1 waiting for your decision"
    assert '"Water" from zoe@example.net' in text_of(summary)
    assert "hold 1 on peace" in text_of(escalation)
    server = Server(peace).start()
    try:
        time.sleep(2.5)  # the job runs twice more: nothing is owed again until remind_every
        assert len(notices_to(sink, FAC, "Reminder")) == 1
        assert len(notices_to(sink, SECRETARIAT, "waited more than")) == 1
        address = re.search(r"reply to: (\S+)", text_of(summary)).group(1)
        _, raw = reply(summary, "approve", to=address)
        send_mail(server.port, FAC, [address], raw)
        sink.wait_for_recipient("ben@example.net")
    finally:
        server.stop()
    wait_until(lambda: query(peace, "SELECT status FROM holds") == [("approved",)])
