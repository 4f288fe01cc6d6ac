"""The SMTP edge: what is refused at RCPT, what is stored before 250."""

from __future__ import annotations

import smtplib
import sqlite3
import time
from datetime import datetime, timezone

import pytest
from helpers import running_intake, send_mail

from listserv.mail.tokens import issue_token
from listserv.site import forums, store
from listserv.site.folder import Site

POST = ("From: Ana <ana@example.org>\nTo: peace@lists.example.org\n"
        "Subject: Water\nMessage-ID: <water-1@example.org>\n\nClean water for all.\n")


@pytest.fixture
def peace(site, now):
    forums.create(site.db, "peace", title="Peace", path="thematic", now=now)
    return site


def stored_messages(site) -> list[dict]:
    """Read with a fresh connection: what is on disk, not in some cache."""
    fresh = store.connect(site.db_path)
    try:
        return list(fresh.query("SELECT id, mail_from, rcpt_tos, raw, status FROM messages"))
    finally:
        fresh.conn.close()


def test_a_post_is_on_disk_when_the_server_says_250(peace):
    with running_intake(peace) as port:
        refused = send_mail(port, "ana@example.org", ["peace@lists.example.org"], POST)
        (row,) = stored_messages(peace)
    assert refused == {}
    assert row["status"] == "received"
    assert b"Clean water for all." in row["raw"]
    assert row["mail_from"] == "ana@example.org"


def test_an_unknown_forum_is_refused_at_rcpt_with_550(peace):
    with running_intake(peace) as port:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send_mail(port, "ana@example.org", ["nosuch@lists.example.org"], POST)
    code, text = refused.value.recipients["nosuch@lists.example.org"]
    assert code == 550 and b"no forum 'nosuch'" in text
    assert stored_messages(peace) == []


def test_mail_for_other_domains_is_refused_so_we_are_no_open_relay(peace):
    with running_intake(peace) as port:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send_mail(port, "ana@example.org", ["victim@example.net"], POST)
    code, text = refused.value.recipients["victim@example.net"]
    assert code == 550 and b"relaying denied" in text


def test_only_the_known_recipients_of_a_message_are_accepted(peace):
    with running_intake(peace) as port:
        refused = send_mail(port, "ana@example.org",
                            ["peace@lists.example.org", "ghost@lists.example.org"], POST)
        (row,) = stored_messages(peace)
    assert list(refused) == ["ghost@lists.example.org"]
    assert "ghost" not in row["rcpt_tos"]


def test_every_forum_address_and_the_site_addresses_are_accepted(peace, now):
    token = issue_token(peace.db, "subscription", forum_id=forums.get(peace.db, "peace")["id"],
                        address="ana@example.org", data={}, now=datetime.now(timezone.utc),
                        lifetime_seconds=3600)  # intake checks codes against the real clock
    addresses = ["peace-request@lists.example.org", "peace-join@lists.example.org",
                 "peace-leave@lists.example.org", "peace-owner@lists.example.org",
                 "peace-bounces@lists.example.org", f"peace-confirm+{token}@lists.example.org",
                 "postmaster@lists.example.org", "abuse@lists.example.org",
                 "PEACE@Lists.Example.Org"]
    with running_intake(peace) as port:
        assert send_mail(port, "ana@example.org", addresses, POST) == {}


def test_a_confirmation_address_without_its_code_is_refused(peace):
    with running_intake(peace) as port:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send_mail(port, "ana@example.org", ["peace-confirm@lists.example.org"], POST)


def test_an_oversize_message_gets_552_and_is_not_stored(tmp_path, sink, now):
    from helpers import write_site
    site = Site(write_site(tmp_path / "site", sink.port,
                           extra="[smtp]\nmax_message_size = 2048\n"))
    forums.create(site.db, "peace", title="Peace", path="thematic", now=now)
    with running_intake(site) as port:
        with pytest.raises(smtplib.SMTPResponseException) as error:
            send_mail(port, "ana@example.org", ["peace@lists.example.org"],
                      POST + "x" * 5000 + "\n")
    assert error.value.smtp_code == 552
    assert stored_messages(site) == []


def test_too_many_recipients_get_a_temporary_452(tmp_path, sink, now):
    from helpers import write_site
    site = Site(write_site(tmp_path / "site", sink.port, extra="[smtp]\nmax_recipients = 2\n"))
    forums.create(site.db, "peace", title="Peace", path="thematic", now=now)
    rcpts = ["peace@lists.example.org", "peace-owner@lists.example.org",
             "peace-request@lists.example.org"]
    with running_intake(site) as port:
        refused = send_mail(port, "ana@example.org", rcpts, POST)
    assert refused["peace-request@lists.example.org"][0] == 452


def test_a_locked_database_answers_451_never_250(tmp_path, sink, now):
    from helpers import write_site
    folder = write_site(tmp_path / "site", sink.port)
    site = Site(folder, busy_timeout=0.5)
    forums.create(site.db, "peace", title="Peace", path="thematic", now=now)
    with running_intake(site) as port:
        blocker = sqlite3.connect(str(site.db_path), isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            with pytest.raises(smtplib.SMTPDataError) as error:
                send_mail(port, "ana@example.org", ["peace@lists.example.org"], POST)
            assert time.monotonic() - started < 10
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert error.value.smtp_code == 451
        # Once the lock is gone, the retried message is accepted.
        assert send_mail(port, "ana@example.org", ["peace@lists.example.org"], POST) == {}
    assert len(stored_messages(site)) == 1


def test_lmtp_answers_once_per_recipient(tmp_path, sink, now):
    from helpers import write_site
    site = Site(write_site(tmp_path / "site", sink.port, extra='[smtp]\nprotocol = "lmtp"\n'))
    forums.create(site.db, "peace", title="Peace", path="thematic", now=now)
    with running_intake(site) as port:
        client = smtplib.LMTP("127.0.0.1", port)
        try:
            refused = client.sendmail("ana@example.org", ["peace@lists.example.org",
                                                          "peace-owner@lists.example.org"],
                                      POST.replace("\n", "\r\n").encode())
        finally:
            client.quit()
    assert refused == {}
    assert len(stored_messages(site)) == 1
