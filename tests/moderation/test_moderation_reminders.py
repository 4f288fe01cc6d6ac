"""Reminders, escalation and expiry, worked out from the store at a given `now`:
a run repeated (or a server restarted) neither loses nor repeats anything."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta

import pytest
from facilitation import (
    DOMAIN,
    FAC,
    FAC2,
    NOW,
    ZOE,
    Pipeline,
    forum_site,
    letter,
    post,
    query,
    text_of,
)

from listserv.site import forums, members
from moderation import rules
from moderation.reminders import remind_due

ANA, DORA = "ana@example.org", "dora@example.org"
SECRETARIAT = "secretariat@example.org"
DAY = timedelta(days=1)
NOTHING = {"expired": 0, "escalated": 0, "reminded": 0}


@pytest.fixture
def rig(tmp_path, sink) -> Pipeline:
    return Pipeline(forum_site(tmp_path, sink))


def due(rig: Pipeline, now) -> dict:
    with rig.site.db.atomic():
        return remind_due(rig.site.db, rig.site, now)


def queued(rig: Pipeline, address: str, ref_prefix: str) -> list:
    rows = rig.site.db.execute(
        "SELECT b.raw FROM deliveries d JOIN bodies b ON b.id = d.body_id WHERE d.recipient = ? "
        "AND d.ref LIKE ? ORDER BY d.id", [address, ref_prefix + "%"]).fetchall()
    return [email.message_from_bytes(raw, policy=email.policy.default) for (raw,) in rows]


def hold_row(rig: Pipeline, hold_id: int = 1) -> tuple:
    return rig.site.db.execute("SELECT status, decision, decided_by, decided_via FROM holds "
                               "WHERE id = ?", [hold_id]).fetchone()


def test_facilitators_get_one_summary_a_day_of_posts_held_longer_than_remind_after(rig):
    rig.receive(post(), ZOE, [f"peace@{DOMAIN}"], NOW)
    assert due(rig, NOW + DAY) == NOTHING
    assert due(rig, NOW + 2 * DAY + timedelta(minutes=1))["reminded"] == 1
    (summary,) = queued(rig, FAC, "summary:")
    assert len(queued(rig, FAC2, "summary:")) == 1
    assert summary["Subject"] == "[peace] Reminder: 1 waiting for your decision"
    assert "held for 2 days: zoe@example.net is not a member of this forum" in text_of(summary)
    assert due(rig, NOW + 2 * DAY + timedelta(hours=2)) == NOTHING
    restarted = Pipeline(rig.folder)  # a new process reads the same store
    assert due(restarted, NOW + 2 * DAY + timedelta(hours=3)) == NOTHING
    assert due(restarted, NOW + 3 * DAY + timedelta(minutes=2))["reminded"] == 1
    assert len(queued(rig, FAC, "summary:")) == 2


def test_a_reply_to_the_summary_decides_the_post(rig):
    rig.receive(post(), ZOE, [f"peace@{DOMAIN}"], NOW)
    later = NOW + 3 * DAY
    due(rig, later)
    (summary,) = queued(rig, FAC, "summary:")
    address = re.search(r"reply to: (\S+)", text_of(summary)).group(1)
    assert address.startswith("peace-confirm+")
    rig.receive(letter(FAC, address, "Re: reminder", "approve\n\n> 1. Water\n"), FAC, [address],
                later)
    assert hold_row(rig) == ("approved", "approve", FAC, "email")
    assert queued(rig, "ben@example.net", "post:")


def test_posts_waiting_past_escalate_after_are_reported_to_the_secretariat_once(rig):
    rig.receive(post(), ZOE, [f"peace@{DOMAIN}"], NOW)
    assert due(rig, NOW + 6 * DAY)["escalated"] == 0
    assert due(rig, NOW + 7 * DAY)["escalated"] == 1
    (report,) = queued(rig, SECRETARIAT, "escalation:")
    assert report["Subject"] == "1 held posts have waited more than 7 days"
    assert 'hold 1 on peace: "Water"' in text_of(report)
    assert due(rig, NOW + 8 * DAY)["escalated"] == 0
    assert hold_row(rig)[0] == "held"


def test_an_expired_post_is_not_distributed_and_its_poster_is_told_in_their_language(rig):
    db = rig.site.db
    members.add(db, "peace", DORA, now=NOW, languages=("en", "fr", "es", "pt"), language="fr")
    rules.edit_rules(db, "peace", {"probation": 1})
    to = [f"peace@{DOMAIN}"]
    rig.receive(post(f"Dora <{DORA}>", "Eau"), DORA, to, NOW)
    rig.receive(post(), ZOE, to, NOW)
    rig.receive(post(f"Ana <{ANA}>", "News", extra="Precedence: bulk\n"), ANA, to, NOW)
    assert due(rig, NOW + 14 * DAY - timedelta(minutes=1))["expired"] == 0
    assert due(rig, NOW + 14 * DAY)["expired"] == 3
    assert [hold_row(rig, n) for n in (1, 2, 3)] == [("expired", "expire", "listserv",
                                                      "expiry")] * 3
    (french,) = queued(rig, DORA, "expired:")
    assert "n'a pas été diffusé" in str(french["Subject"]) and "14 jours" in text_of(french)
    (english,) = queued(rig, ZOE, "expired:")
    assert "no decision was taken within\n14 days" in text_of(english).replace("\r", "")
    assert queued(rig, ANA, "expired:") == []  # bulk mail gets no automatic answer
    assert not query(rig.folder, "SELECT 1 FROM posts WHERE status IN ('approved', "
                                 "'distributed')")
    assert due(rig, NOW + 15 * DAY)["expired"] == 0


def test_replying_to_the_notice_of_an_expired_post_says_it_expired(rig):
    rig.receive(post(), ZOE, [f"peace@{DOMAIN}"], NOW)
    (notice,) = queued(rig, FAC, "held:")
    due(rig, NOW + 14 * DAY)
    address = str(notice["Reply-To"])
    rig.receive(letter(FAC, address, "approve", ""), FAC, [address], NOW + 14 * DAY)
    (answer,) = queued(rig, FAC, "reply:")
    assert "left to expire by listserv (expiry)" in " ".join(text_of(answer).split())
    assert hold_row(rig)[0] == "expired"


def confirmed_request(rig: Pipeline, at) -> None:
    """Dora asks to join and confirms (accepting the charter) at `at`."""
    join = f"peace-join@{DOMAIN}"
    rig.receive(letter(f"Dora <{DORA}>", join, "join", ""), DORA, [join], NOW)
    (confirmation,) = queued(rig, DORA, "reply:")
    confirm = str(confirmation["Reply-To"])
    rig.receive(letter(f"Dora <{DORA}>", confirm, "Re: confirm", "yes\n"), DORA, [confirm], at)


def test_an_approved_subscription_keeps_the_time_the_charter_was_really_accepted(rig):
    forums.edit(rig.site.db, "peace", {"subscription": "approve"}, languages=("en",))
    confirmed = NOW + timedelta(hours=1)
    confirmed_request(rig, confirmed)
    (notice,) = queued(rig, FAC, "request:")
    assert notice["Subject"] == "[peace] Subscription request: dora@example.org"
    address = str(notice["Reply-To"])
    approved = NOW + 3 * DAY
    rig.receive(letter(FAC, address, "Re: request", "Approve\n"), FAC, [address], approved)
    member = members.find(rig.site.db, 1, DORA)
    assert member["charter_accepted_at"] == confirmed.isoformat()
    assert member["joined_at"] == approved.isoformat()
    events = query(rig.folder, "SELECT kind, at FROM events WHERE address = ? ORDER BY id",
                   [DORA])
    assert ("charter-accepted", confirmed.isoformat()) in events
    assert ("subscription-approved", approved.isoformat()) in events
    assert queued(rig, DORA, "welcome:request:")


def test_a_subscription_request_nobody_decides_lapses_and_the_requester_is_told(rig):
    forums.edit(rig.site.db, "peace", {"subscription": "approve"}, languages=("en",))
    confirmed_request(rig, NOW)
    assert due(rig, NOW + 3 * DAY)["reminded"] == 1
    (summary,) = queued(rig, FAC, "summary:")
    assert "dora@example.org, waiting for 3 days" in text_of(summary)
    assert due(rig, NOW + 14 * DAY + timedelta(minutes=1))["expired"] == 1
    (lapsed,) = queued(rig, DORA, "refused:request:")
    assert "has now lapsed" in " ".join(text_of(lapsed).split())
    assert members.find(rig.site.db, 1, DORA) is None
