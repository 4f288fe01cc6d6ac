"""Bounces that act: signed VERP addresses, only real reports counting, one
point a day, and members disabled, warned, re-enabled and removed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from helpers import write_site

from listserv.delivery.bounce_actions import act_on_bounces, enable
from listserv.delivery.bounces import handle_bounce_message, record_bounce
from listserv.mail.tokens import (
    bounce_token,
    bounce_token_valid,
    read_bounce_token,
    verp_sender,
)
from listserv.delivery.engine import deliver_pending
from listserv.delivery.queue import enqueue_members, queue_message, store_body
from listserv.site import forums, members
from listserv.site.folder import Site

MAIL = Path(__file__).parent.parent / "mail"
DOMAIN = "lists.example.org"
BODY = b"From: ana@example.org\r\nSubject: [peace] Water\r\n\r\nWells.\r\n"


def dsn(final_recipient: str, action: str = "failed", status: str = "5.1.1",
        to: str = "peace-bounces@lists.example.org") -> bytes:
    """A delivery status notification as Postfix writes one (RFC 3464)."""
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: {to}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

<{final_recipient}>: {status[0]}50 {status} mailbox does not exist

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {final_recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {status[0]}50 {status} <{final_recipient}>: mailbox does not exist

--b--
""".replace("\n", "\r\n").encode()


OUT_OF_OFFICE = b"""\
From: Ben <ben@example.org>
To: peace-bounces@lists.example.org
Subject: Out of office: [peace] Water
Auto-Submitted: auto-replied

I am away until Monday and cannot read your message: it was not delivered to me.
"""

CHATTER = b"From: mallory@example.net\r\nSubject: undelivered\r\n\r\nYour mail was undelivered.\r\n"


def verp_site(tmp_path, sink, extra: str = "") -> Site:
    return Site(write_site(tmp_path / "site", sink.port, extra="verp = true\n" + extra))


def peace(site, now, *addresses) -> dict:
    forum = forums.create(site.db, "peace", title="Peace", path="thematic", now=now,
                          facilitators=("fac@example.org",))
    for address in addresses:
        members.add(site.db, "peace", address, now=now, languages=("en",))
    return forum


def post_to_members(site, now, forum) -> dict[str, str]:
    """Queue a post to the forum and hand it over; returns each member's
    envelope sender, as the sink saw it."""
    def work(db):
        body_id = store_body(db, f"post:{now.timestamp()}", BODY, now, forum["id"])
        enqueue_members(db, f"post:{now.timestamp()}", body_id, f"peace-bounces@{DOMAIN}",
                        now, forum_id=forum["id"], mode="each", profile="email", batch=1)
    site.write_now(work)
    before = len(site_sink(site))
    deliver_pending(site, now)
    return {c.rcpt_tos[0]: c.mail_from for c in site_sink(site)[before:]}


_SINKS: dict = {}


def site_sink(site):
    return _SINKS[site.folder].caught


def handle(site, raw: bytes, to: str, now, slug: str = "peace") -> list[str]:
    detail = to.partition("@")[0].partition("+")[2]
    return site.write_now(lambda db: handle_bounce_message(db, site, raw, detail, now, slug))


def member(site, address: str) -> dict:
    return next(site.db.query("SELECT * FROM members WHERE address = ?", [address]))


def test_each_copy_gets_a_signed_bounce_address_that_the_pure_check_accepts(tmp_path, sink,
                                                                           now):
    site = verp_site(tmp_path, sink)
    _SINKS[site.folder] = sink
    forum = peace(site, now, "ana@example.org", "ben+news@example.org")
    senders = post_to_members(site, now, forum)
    assert len(set(senders.values())) == 2
    for recipient, sender in senders.items():
        local = sender.partition("@")[0]
        assert local.startswith("peace-bounces+") and len(local) <= 64
        assert bounce_token_valid(site.secret, local)
        assert bounce_token_valid(site.secret, local.upper())  # local parts get case-folded
        slug, delivery_id = read_bounce_token(site.secret, local)
        row = site.db.execute("SELECT recipient FROM deliveries WHERE id = ?",
                              [delivery_id]).fetchone()
        assert (slug, row[0]) == ("peace", recipient)
    forged = f"peace-bounces+{bounce_token(b'another secret', 'peace', 1)}"
    assert not bounce_token_valid(site.secret, forged)
    other_forum = f"peace-bounces+{bounce_token(site.secret, 'farm', 1)}"
    assert not bounce_token_valid(site.secret, other_forum)
    for junk in ("peace-bounces", "peace-bounces+", "peace-bounces+ana=example.org",
                 "peace+1.aaaaaaaaaaaaaaaa", "-bounces+1.aaaaaaaaaaaaaaaa", "", "+++"):
        assert not bounce_token_valid(site.secret, junk)
    assert verp_sender(site.secret, "someone@example.com", 1, DOMAIN) == "someone@example.com"
    assert verp_sender(site.secret, f"postmaster@{DOMAIN}", 1, DOMAIN) == f"postmaster@{DOMAIN}"


def test_a_dsn_to_a_copys_own_address_counts_for_that_member_only(tmp_path, sink, now):
    site = verp_site(tmp_path, sink)
    _SINKS[site.folder] = sink
    forum = peace(site, now, "ana@example.org", "ben@example.org")
    senders = post_to_members(site, now, forum)
    # The report names a forwarding address, and ana, but came back to ben's copy's address.
    raw = (MAIL / "bounce-verp.eml").read_bytes().replace(b"ben.forward@example.net",
                                                          b"ana@example.org")
    assert handle(site, raw, senders["ben@example.org"], now) == ["ben@example.org"]
    assert (member(site, "ben@example.org")["bounce_score"],
            member(site, "ana@example.org")["bounce_score"]) == (1, 0)
    (bounce,) = site.db.query("SELECT * FROM bounces")
    assert (bounce["recipient"], bounce["forum_id"]) == ("ben@example.org", forum["id"])
    status = site.db.execute("SELECT status FROM deliveries WHERE id = ?",
                             [bounce["delivery_id"]]).fetchone()[0]
    assert status == "bounced"


def test_reports_without_a_valid_token_and_anything_but_a_failure_never_count(tmp_path, sink,
                                                                              now):
    site = verp_site(tmp_path, sink)
    _SINKS[site.folder] = sink
    forum = peace(site, now, "ben@example.org")
    ben = post_to_members(site, now, forum)["ben@example.org"]
    token = ben.partition("@")[0].partition("+")[2]
    tampered = ben.replace(token, token[:-1] + ("a" if token[-1] != "a" else "b"))
    cases = [
        ((MAIL / "bounce-user-unknown.eml").read_bytes(), f"peace-bounces@{DOMAIN}"),
        (dsn("ben@example.org"), f"peace-bounces+ben=example.org@{DOMAIN}"),  # old style
        (dsn("ben@example.org"), tampered),
        (OUT_OF_OFFICE, ben),
        ((MAIL / "auto-replied.eml").read_bytes(), ben),
        (CHATTER, ben),
        (dsn("ben@example.org", action="delayed", status="4.4.1"), ben),
        (b"\x00\xff not mail at all", ben),
    ]
    for raw, to in cases:
        assert handle(site, raw, to, now) == [], to
    assert handle(site, dsn("ben@example.org"), ben, now, slug="farm") == []
    assert site.db.execute("SELECT count(*) FROM bounces").fetchone()[0] == 0
    assert member(site, "ben@example.org")["bounce_score"] == 0


def test_fifty_bounces_in_a_day_count_once_and_five_days_disable_and_warn(tmp_path, sink,
                                                                          now):
    site = verp_site(tmp_path, sink)
    _SINKS[site.folder] = sink
    forum = peace(site, now, "ana@example.org", "ben@example.org")
    ben = post_to_members(site, now, forum)["ben@example.org"]
    for minute in range(50):
        handle(site, dsn("ben@example.org"), ben, now + timedelta(minutes=minute))
    assert member(site, "ben@example.org")["bounce_score"] == 1
    for day in range(1, 5):
        later = now + timedelta(days=day)
        address = post_to_members(site, later, forum)["ben@example.org"]
        assert handle(site, dsn("ben@example.org"), address, later) == ["ben@example.org"]
    disabled = member(site, "ben@example.org")
    assert (disabled["bounce_score"], disabled["delivery"], disabled["warnings"]) == \
        (5, "disabled", 1)
    deliver_pending(site, now + timedelta(days=4, minutes=1))
    (notice,) = [m for m in sink.messages_to("ben@example.org")
                 if "paused" in str(m["Subject"])]
    assert "(1 of 3)" in notice["Subject"]
    assert "peace-confirm+" in notice.get_content()
    later = now + timedelta(days=5)
    assert set(post_to_members(site, later, forum)) == {"ana@example.org"}  # ben skipped


def test_scores_go_stale_and_temporary_failures_never_count(tmp_path, sink, now):
    site = verp_site(tmp_path, sink)
    forum = peace(site, now, "ben@example.org")
    for day in (0, 1, 2):
        site.write_now(record_bounce, None, "ben@example.org", 550, "no such user",
                       now + timedelta(days=day), forum["id"])
    assert member(site, "ben@example.org")["bounce_score"] == 3
    site.write_now(act_on_bounces, site, now + timedelta(days=10))  # 8 days quiet: stale
    assert member(site, "ben@example.org")["bounce_score"] == 0
    site.write_now(record_bounce, None, "ben@example.org", 550, "no such user",
                   now + timedelta(days=30), forum["id"])
    assert member(site, "ben@example.org")["bounce_score"] == 1
    sink.handler.answer = lambda rcpt: "450 4.2.0 mailbox busy, try later"
    site.write_now(queue_message, "notice:1", BODY, ["ben@example.org"],
                   f"peace-bounces@{DOMAIN}", now + timedelta(days=30), forum["id"])
    counts = deliver_pending(site, now + timedelta(days=30))
    assert counts["deferred"] == 1, counts
    assert member(site, "ben@example.org")["bounce_score"] == 1


def test_a_disabled_member_is_warned_each_interval_then_removed_and_facilitators_told(
        tmp_path, sink, now):
    site = verp_site(tmp_path, sink, "[bounces]\nthreshold = 2\nwarnings = 2\n")
    _SINKS[site.folder] = sink
    forum = peace(site, now, "ana@example.org", "ben@example.org")
    sink.handler.answer = lambda rcpt: "550 5.1.1 no such user" if rcpt.startswith("ben") \
        else None
    for day in (0, 1):  # 5xx at hand-over count too
        post_to_members(site, now + timedelta(days=day), forum)
    assert member(site, "ben@example.org")["bounce_score"] == 2
    sink.handler.answer = lambda rcpt: None
    first = now + timedelta(days=1, hours=1)
    done = site.write_now(act_on_bounces, site, first)
    assert (done["disabled"], done["summaries"]) == (1, 1)
    assert site.write_now(act_on_bounces, site, first + timedelta(hours=1))["summaries"] == 0
    assert site.write_now(act_on_bounces, site, first + timedelta(days=6))["warned"] == 0
    assert site.write_now(act_on_bounces, site, first + timedelta(days=7))["warned"] == 1
    assert site.write_now(act_on_bounces, site, first + timedelta(days=13))["removed"] == 0
    done = site.write_now(act_on_bounces, site, first + timedelta(days=14))
    assert done["removed"] == 1 and done["summaries"] == 1
    assert members.find(site.db, forum["id"], "ben@example.org") is None
    deliver_pending(site, first + timedelta(days=14, minutes=1))
    notices = [str(m["Subject"]) for m in sink.messages_to("ben@example.org")
               if "paused" in str(m["Subject"])]
    assert sorted(notices) == ["[peace] Delivery to ben@example.org is paused (1 of 2)",
                               "[peace] Delivery to ben@example.org is paused (2 of 2)"]
    summaries = [m for m in sink.messages_to("fac@example.org")]
    assert [str(m["Subject"]) for m in summaries] == [
        "[peace] Bounces: 1 paused, 0 removed", "[peace] Bounces: 0 paused, 1 removed"]
    assert "ben@example.org" in summaries[1].get_content()


def test_enable_turns_delivery_back_on_and_clears_the_score(tmp_path, sink, now):
    site = verp_site(tmp_path, sink, "[bounces]\nthreshold = 1\n")
    forum = peace(site, now, "ben@example.org")
    site.write_now(record_bounce, None, "ben@example.org", 550, "gone", now, forum["id"])
    site.write_now(act_on_bounces, site, now)
    assert member(site, "ben@example.org")["delivery"] == "disabled"
    site.write_now(enable, forum, "Ben@Example.org", now)
    back = member(site, "ben@example.org")
    assert (back["delivery"], back["bounce_score"], back["warnings"]) == ("enabled", 0, 0)


def test_through_the_server_a_bounce_disables_and_one_reply_enables_again(tmp_path, sink):
    from helpers import listserv, make_site, running_server, send_mail, wait_until

    folder = make_site(tmp_path, sink, web_url="https://lists.example.org")  # personal: VERP
    config = folder / "listserv.toml"
    config.write_text(config.read_text().replace("threshold = 5", "threshold = 1")
                      .replace('check_every = "15m"', 'check_every = "1s"'))
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--no-charter", "--facilitator", "fac@example.org", site=folder)
    for address in ("ana@example.org", "ben@example.net"):
        listserv("member", "add", "peace", address, "--preconfirmed", site=folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  "From: Ana <ana@example.org>\nSubject: Wells\n\nTwo new wells.\n")
        sink.wait_for_recipient("ben@example.net")
        (copy,) = [c for c in sink.caught if c.rcpt_tos == ["ben@example.net"]]
        assert copy.mail_from.startswith("peace-bounces+")
        send_mail(server.port, "", [copy.mail_from], dsn("ben@example.net", to=copy.mail_from))
        wait_until(lambda: any("paused" in str(m["Subject"])
                               for m in sink.messages_to("ben@example.net")), 20, "the notice")
        shown = listserv("member", "show", "peace", "ben@example.net", site=folder).stdout
        assert "disabled by bounces" in shown and "Bounce score: 1" in " ".join(shown.split())
        listed = listserv("member", "list", "peace", site=folder).stdout
        assert "DELIVERY" in listed and "disabled" in listed
        (notice,) = [m for m in sink.messages_to("ben@example.net")
                     if "paused" in str(m["Subject"])]
        confirm = next(word for word in notice.get_content().split()
                       if word.startswith("peace-confirm+"))
        send_mail(server.port, "ben@example.net", [confirm],
                  f"From: ben@example.net\nTo: {confirm}\nSubject: Re: {notice['Subject']}\n"
                  f"\nYes please.\n")
        wait_until(lambda: any("on again" in str(m["Subject"])
                               for m in sink.messages_to("ben@example.net")), 20, "the answer")
    shown = listserv("member", "show", "peace", "ben@example.net", site=folder).stdout
    assert "Delivery:     enabled" in shown or "enabled" in shown.split("Delivery:")[1][:20]
    assert "Bounce score: 0" in " ".join(shown.split())
