"""Moderation from the command line: the same decision path as replies by mail,
and one log of every decision, whichever way it came."""

from __future__ import annotations

import getpass
import json

import pytest
from facilitation import DOMAIN, FAC, NOW, ZOE, Pipeline, forum_site, letter, post, query
from helpers import listserv

from listserv.site import forums

TO = [f"peace@{DOMAIN}"]


@pytest.fixture
def rig(tmp_path, sink) -> Pipeline:
    return Pipeline(forum_site(tmp_path, sink))


def queued_refs(rig: Pipeline, address: str) -> list[str]:
    return [r[0] for r in query(rig.folder, "SELECT ref FROM deliveries WHERE recipient = ?",
                                [address])]


def reply_address(rig: Pipeline, ref: str) -> str:
    import email
    import email.policy
    raw = query(rig.folder, "SELECT b.raw FROM deliveries d JOIN bodies b ON b.id = d.body_id "
                            "WHERE d.ref = ? AND d.recipient = ?", [ref, FAC])[0][0]
    return str(email.message_from_bytes(raw, policy=email.policy.default)["Reply-To"])


def test_held_log_shows_every_decision_with_who_when_how_and_why(rig):
    for subject in ("One", "Two", "Three"):
        rig.receive(post(subject=subject, body=f"{subject}\n"), ZOE, TO, NOW)
    address = reply_address(rig, "held:1")
    rig.receive(letter(FAC, address, "Re: held", "reject Not for this forum\n"), FAC,
                [address], NOW)
    listserv("held", "accept-always", "2", site=rig.folder)
    listserv("held", "discard", "3", site=rig.folder)
    log = json.loads(listserv("held", "log", "peace", "--json", site=rig.folder).stdout)
    assert sorted((row["id"], row["decision"], row["decided_by"], row["decided_via"],
                   row["decision_reason"]) for row in log) == [
        (1, "reject", FAC, "email", "Not for this forum"),
        (2, "accept-always", getpass.getuser(), "cli", ""),
        (3, "discard", getpass.getuser(), "cli", "")]
    text = listserv("held", "log", site=rig.folder).stdout
    assert f"{FAC} (email)" in text and f"{getpass.getuser()} (cli)" in text
    assert "accept-always" in text
    assert [r for r in queued_refs(rig, ZOE) if r.startswith("rejected:")] == ["rejected:1"]


def test_ban_from_the_command_line_drops_the_post_and_the_senders_next_ones(rig):
    rig.receive(post(), ZOE, TO, NOW)
    result = listserv("held", "ban", "1", site=rig.folder)
    assert f"{ZOE} is banned there" in result.stderr
    (row,) = json.loads(listserv("sender", "list", "--json", site=rig.folder).stdout)
    assert (row["address"], row["standing"], row["set_via"]) == (ZOE, "ban", "cli")
    rig.receive(post(subject="Again", body="Again.\n"), ZOE, TO, NOW)
    assert query(rig.folder, "SELECT status FROM posts WHERE subject = 'Again'") == \
        [("ignored",)]
    listserv("sender", "clear", "peace", ZOE, site=rig.folder)
    rig.receive(post(subject="Third", body="Third.\n"), ZOE, TO, NOW)
    assert query(rig.folder, "SELECT status FROM posts WHERE subject = 'Third'") == [("held",)]


def test_a_sender_can_be_accepted_or_banned_ahead_of_any_post(rig):
    listserv("sender", "accept", "peace", "Zoe@Example.NET", "--reason", "a partner",
             site=rig.folder)
    rig.receive(post(), ZOE, TO, NOW)
    assert query(rig.folder, "SELECT status FROM posts") == [("distributed",)]
    shown = listserv("sender", "list", "peace", site=rig.folder).stdout
    assert ZOE in shown and "accept" in shown and "a partner" in shown
    bad = listserv("sender", "ban", "peace", "not an address", site=rig.folder, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: 'not an address'")
    missing = listserv("sender", "clear", "peace", "nobody@example.org", site=rig.folder,
                       check=False)
    assert missing.returncode == 1 and "has no standing" in missing.stderr


def test_accept_always_or_ban_needs_a_post_with_one_from_address(rig):
    raw = letter(f"{FAC}, other@example.org", TO[0], "Two senders", "Hi\n")
    rig.receive(raw, "other@example.org", TO, NOW)
    result = listserv("held", "ban", "1", site=rig.folder, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ("Error: hold 1 has no single From address, so its sender "
                                     "cannot be accepted always or banned; use approve or "
                                     "discard")
    assert query(rig.folder, "SELECT status FROM holds") == [("held",)]


def test_subscription_requests_are_listed_and_decided_on_the_command_line(rig):
    forums.edit(rig.site.db, "peace", {"subscription": "approve"}, languages=("en",))
    for who in ("dora", "eli"):
        address = f"{who}@example.org"
        join = f"peace-join@{DOMAIN}"
        rig.receive(letter(address, join, "join", ""), address, [join], NOW)
        raw = query(rig.folder, "SELECT b.raw FROM deliveries d JOIN bodies b ON "
                                "b.id = d.body_id WHERE d.recipient = ?", [address])[0][0]
        confirm = [line for line in raw.decode().splitlines()
                   if line.startswith("Reply-To: ")][0].split(": ", 1)[1]
        rig.receive(letter(address, confirm, "Re: confirm", "yes\n"), address, [confirm], NOW)
    waiting = json.loads(listserv("request", "list", "--json", site=rig.folder).stdout)
    assert [(r["id"], r["address"], r["status"]) for r in waiting] == \
        [(1, "dora@example.org", "waiting"), (2, "eli@example.org", "waiting")]
    listserv("request", "approve", "1", site=rig.folder)
    listserv("request", "reject", "2", "--reason", "Farmers only", site=rig.folder)
    again = listserv("request", "reject", "1", site=rig.folder, check=False)
    assert again.returncode == 1 and "was already approved by" in again.stderr
    members = json.loads(listserv("member", "list", "peace", "--json", site=rig.folder).stdout)
    assert "dora@example.org" in [m["address"] for m in members]
    assert "eli@example.org" not in [m["address"] for m in members]
    assert "refused:request:2" in queued_refs(rig, "eli@example.org")
    assert listserv("request", "list", site=rig.folder).stderr.strip() == \
        "No subscription requests are waiting."
