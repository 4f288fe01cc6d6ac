"""Hold rules per forum, through the real pipeline: each post held, refused,
discarded or distributed as the forum's rules say, each hold with its reason."""

from __future__ import annotations

import json
from datetime import timedelta
from email.message import EmailMessage

import pytest
from facilitation import DOMAIN, FAC, NOW, ZOE, Pipeline, forum_site, post, query
from helpers import listserv

from listserv.mail.compose import to_bytes
from moderation import rules
from moderation.decisions import carry_out

ANA = "ana@example.org"
TO = [f"peace@{DOMAIN}"]


@pytest.fixture
def rig(tmp_path, sink) -> Pipeline:
    return Pipeline(forum_site(tmp_path, sink))


def send(rig: Pipeline, raw: bytes, mail_from: str = ANA, now=NOW) -> tuple[str, str]:
    """A post through the pipeline; returns the post's (status, reason)."""
    row_id = rig.receive(raw, mail_from, TO, now)
    return tuple(rig.site.db.execute("SELECT status, reason FROM posts WHERE message_id = ?",
                                     [row_id]).fetchone())


def set_rules(rig: Pipeline, **changes) -> None:
    rules.edit_rules(rig.site.db, "peace", changes)


def queued_to(rig: Pipeline, address: str) -> list[str]:
    return [row[0] for row in rig.site.db.execute(
        "SELECT ref FROM deliveries WHERE recipient = ? ORDER BY id", [address])]


def member_post(subject: str = "Water", body: str = "Clean water.\n", **kwargs) -> bytes:
    return post(f"Ana <{ANA}>", subject, body, **kwargs)


def test_a_non_members_post_is_held_rejected_or_discarded_as_the_forum_says(rig):
    assert send(rig, post(), ZOE) == ("held", f"{ZOE} is not a member of this forum")
    assert queued_to(rig, FAC) == ["held:1"]  # and the facilitators are told
    set_rules(rig, non_member="reject")
    status, reason = send(rig, post(subject="Two"), ZOE)
    assert status == "refused" and "accepts posts from its members only" in reason
    assert [ref for ref in queued_to(rig, ZOE) if ref.startswith("refused:")]
    set_rules(rig, non_member="discard")
    assert send(rig, post(subject="Three"), ZOE)[0] == "ignored"
    assert len(queued_to(rig, ZOE)) == 1 and queued_to(rig, FAC) == ["held:1"]


def test_a_new_members_first_posts_are_held_until_enough_were_accepted(rig):
    set_rules(rig, probation=2)
    for number in (1, 2):
        status, reason = send(rig, member_post(f"Post {number}", f"Text {number}.\n"))
        assert status == "held"
        assert reason == f"the first 2 posts of a new member are held ({ANA} has " \
                         f"{number - 1} accepted so far)"
        hold_id = query(rig.folder, "SELECT max(id) FROM holds")[0][0]
        with rig.site.db.atomic():
            carry_out(rig.site.db, rig.site, hold_id, "approve", by=FAC, via="cli", now=NOW)
        rig.run(NOW)
    assert send(rig, member_post("Post 3")) == ("distributed", "")
    assert send(rig, post(f"Fac <{FAC}>", "From a facilitator"), FAC)[0] == "distributed"


def test_size_attachment_type_and_content_limits_hold_a_members_post(rig):
    set_rules(rig, max_size=3000, hold_types="*.exe, application/x-msdownload",
              hold_words="cheap watches, Casino")
    status, reason = send(rig, member_post(body="x" * 4000 + "\n"))
    assert status == "held" and reason.startswith("the message is ") and "3000" in reason
    assert send(rig, member_post("Offer", "Buy CHEAP\n watches now\n"))[1] == \
        "it contains the phrase 'cheap watches', held on this forum"
    assert send(rig, member_post("Fine", "The watches were cheap.\n"))[0] == "distributed"
    held = send(rig, with_attachment("setup.exe", "application/octet-stream"))
    assert held == ("held", "it carries an attachment of a held type: setup.exe "
                            "(application/octet-stream)")
    assert send(rig, with_attachment("plan.pdf", "application/pdf", "Plan"))[0] == \
        "distributed"


def with_attachment(name: str, kind: str, subject: str = "Tool") -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = ANA, TO[0], subject
    message["Message-ID"] = f"<{name}@example.org>"
    message.set_content("See attached.\n")
    maintype, subtype = kind.split("/")
    message.add_attachment(b"MZ\x90\x00" * 64, maintype=maintype, subtype=subtype,
                           filename=name)
    return to_bytes(message)


def test_suspected_loops_are_held_unless_the_forum_lets_them_pass(rig):
    hops = "".join(f"Received: from hop{n}.example.net by hop{n + 1}.example.net\n"
                   for n in range(31))
    status, reason = send(rig, member_post(extra=hops))
    assert (status, reason) == ("held", "suspected mail loop: it went through 31 mail servers")
    assert send(rig, post("Robot <noreply@example.org>", "Hi"), "noreply@example.org")[1] == \
        "suspected mail loop: it comes from an automatic address (noreply@example.org)"
    for number in range(2):
        assert send(rig, member_post(f"Again {number}", "Out of office.\n"))[0] == "distributed"
    assert send(rig, member_post("Again 3", "Out of  office.\n"))[1] == \
        f"suspected mail loop: the same text came from {ANA} 2 times within the last hour"
    set_rules(rig, hold_loops=False)
    assert send(rig, member_post("Again 4", "Out of office.\n"))[0] == "distributed"


def test_a_member_posting_beyond_the_daily_limit_is_held_until_the_next_day(rig):
    set_rules(rig, daily_limit=2)
    assert [send(rig, member_post(f"P{n}", f"Text {n}\n"))[0] for n in range(3)] == \
        ["distributed", "distributed", "held"]
    assert send(rig, member_post("Tomorrow", "Later.\n"), now=NOW + timedelta(hours=25))[0] == \
        "distributed"


def test_the_emergency_switch_holds_every_post_even_a_facilitators(rig):
    set_rules(rig, emergency=True)
    assert send(rig, post(f"Fac <{FAC}>", "Urgent"), FAC) == \
        ("held", "the forum's emergency switch is on: every post is held")
    assert send(rig, member_post())[0] == "held"
    set_rules(rig, emergency=False)
    assert send(rig, member_post("After"))[0] == "distributed"


def test_an_always_accepted_sender_skips_who_they_are_but_not_what_they_send(rig):
    with rig.site.db.atomic():
        rules.set_standing(rig.site.db, 1, ZOE, "accept", by=FAC, via="cli", now=NOW)
    set_rules(rig, hold_words="casino")
    assert send(rig, post(), ZOE)[0] == "distributed"
    assert send(rig, post(subject="Casino night"), ZOE)[0] == "held"


def test_a_banned_senders_post_is_dropped_without_notice_to_anyone(rig):
    with rig.site.db.atomic():
        rules.set_standing(rig.site.db, 1, ANA, "ban", by=FAC, via="cli", now=NOW)
    assert send(rig, member_post()) == ("ignored", f"{ANA} is banned from this forum")
    assert queued_to(rig, FAC) == [] and queued_to(rig, ANA) == []


def test_a_bulk_post_is_held_and_its_sender_is_never_told_of_a_rejection(rig):
    assert send(rig, member_post(extra="Precedence: bulk\n"))[0] == "held"
    assert queued_to(rig, FAC) == ["held:1"]
    with rig.site.db.atomic():
        hold = carry_out(rig.site.db, rig.site, 1, "reject", by=FAC, via="cli", now=NOW,
                         reason="No newsletters")
    assert hold["status"] == "rejected" and hold["told"] is False
    assert queued_to(rig, ANA) == []


def test_hold_rules_are_set_and_shown_on_the_command_line(rig):
    folder = rig.folder
    listserv("forum", "edit", "peace", "--non-member", "discard", "--probation", "3",
             "--max-size", "500000", "--hold-types", "*.exe *.scr", "--hold-words",
             "casino, cheap watches", "--no-hold-loops", "--daily-limit", "10",
             "--emergency", site=folder)
    shown = listserv("forum", "show", "peace", site=folder).stdout
    for part in ("EMERGENCY: every post is held", "non-members' posts: discard",
                 "first 3 posts of new members held", "more than 10 posts a day held",
                 "attachments held: *.exe, *.scr", "phrases held: casino, cheap watches",
                 "suspected loops pass"):
        assert part in shown, part
    forum = json.loads(listserv("forum", "show", "peace", "--json", site=folder).stdout)
    assert (forum["probation"], forum["emergency"], forum["hold_loops"]) == (3, 1, 0)
    bad = listserv("forum", "edit", "peace", "--hold-types", ".exe files", site=folder,
                   check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "Error: 'files' is not an attachment type like " \
                                 "'application/x-msdownload' or a file name like '*.exe'"
