"""`listserv serve` end to end: SMTP in, the real command line, a sink out."""

from __future__ import annotations

import json
import re
import signal
import smtplib
import subprocess
import sys

import pytest
from helpers import Server, listserv, make_site, running_server, send_mail


@pytest.fixture
def peace(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    listserv("forum", "create", "peace", "--title", "Peace workshop", "--path", "thematic",
             "--facilitator", "fac@example.org", site=folder)
    for address in ("ana@example.org", "ben@example.net", "chloe@example.org"):
        listserv("member", "add", "peace", address, "--preconfirmed", site=folder)
    return folder


POST = ("From: Ana <ana@example.org>\nTo: peace@lists.example.org\nSubject: Water\n"
        "Message-ID: <water-1@example.org>\n\nClean water for every village.\n")


def test_a_members_post_reaches_every_member_with_the_list_headers(peace, sink):
    with running_server(peace) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST)
        for address in ("ben@example.net", "chloe@example.org", "ana@example.org"):
            (copy,) = sink.wait_for_recipient(address)
    assert copy["Subject"] == "[peace] Water"
    assert copy["List-Id"] == '"Peace workshop" <peace.lists.example.org>'
    assert copy["List-Unsubscribe"] == "<mailto:peace-leave@lists.example.org>"
    assert copy["Precedence"] == "list"
    assert "Clean water for every village." in copy.get_content()
    envelope = {c.mail_from for c in sink.caught}
    assert envelope == {"peace-bounces@lists.example.org"}


def test_the_same_post_sent_twice_is_distributed_once(peace, sink):
    with running_server(peace) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST)
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST)
        sink.wait_for_recipient("ben@example.net")
        quiet = listserv("status", "--json", site=peace)
    assert len(sink.messages_to("ben@example.net")) == 1
    assert json.loads(quiet.stdout)  # status still reads the site while it is served


def test_a_non_members_post_is_held_and_a_cli_approval_distributes_it_once(peace, sink):
    stranger = POST.replace("Ana <ana@example.org>", "Zoe <zoe@example.net>")
    with running_server(peace) as server:
        send_mail(server.port, "zoe@example.net", ["peace@lists.example.org"], stranger)
        held = _wait_for_hold(peace)
        assert held["reason"] == "zoe@example.net is not a member of this forum"
        assert sink.messages_to("ben@example.net") == []
        listserv("held", "approve", str(held["id"]), site=peace)
        listserv("held", "approve", str(held["id"]), site=peace)
        sink.wait_for_recipient("ben@example.net")
        sink.wait_for_recipient("chloe@example.org")
    assert len(sink.messages_to("ben@example.net")) == 1


def _wait_for_hold(site, timeout: float = 20) -> dict:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = json.loads(listserv("held", "list", "--json", site=site).stdout)
        if rows:
            return rows[0]
        time.sleep(0.2)
    raise AssertionError("no post was held")


def test_subscribing_by_email_is_a_confirmed_round_trip_with_the_charter(peace, sink):
    request = ("From: Dora <dora@example.org>\nTo: peace-join@lists.example.org\n"
               "Subject: join\nMessage-ID: <join-1@example.org>\n\n")
    with running_server(peace) as server:
        send_mail(server.port, "dora@example.org", ["peace-join@lists.example.org"], request)
        (confirmation,) = sink.wait_for_recipient("dora@example.org")
        reply_to = confirmation["Reply-To"]
        assert re.fullmatch(r"peace-confirm\+[0-9a-f]{32}@lists\.example\.org", reply_to)
        assert "charter" in confirmation.get_content().lower()
        members = json.loads(listserv("member", "list", "peace", "--json", site=peace).stdout)
        assert "dora@example.org" not in [m["address"] for m in members]
        reply = (f"From: Dora <dora@example.org>\nTo: {reply_to}\n"
                 f"Subject: Re: {confirmation['Subject']}\n"
                 f"In-Reply-To: {confirmation['Message-ID']}\n\nYes, I accept.\n")
        send_mail(server.port, "dora@example.org", [reply_to], reply)
        welcome = sink.wait_for_recipient("dora@example.org", count=2)[1]
    assert "peace" in welcome["Subject"].lower() or "welcome" in welcome["Subject"].lower()
    members = json.loads(listserv("member", "list", "peace", "--json", site=peace).stdout)
    (dora,) = [m for m in members if m["address"] == "dora@example.org"]
    assert dora["charter_accepted_at"]


def test_the_signed_leave_address_in_list_unsubscribe_removes_the_member(tmp_path, sink):
    folder = make_site(tmp_path, sink, web_url="https://lists.example.org")
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             site=folder)
    listserv("member", "add", "peace", "ana@example.org", "--preconfirmed", site=folder)
    listserv("member", "add", "peace", "ben@example.net", "--preconfirmed", site=folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST)
        (copy,) = sink.wait_for_recipient("ben@example.net")
        links = copy["List-Unsubscribe"]
        assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert links.startswith("<https://lists.example.org/unsubscribe/")
        mailto = re.search(r"<mailto:([^>]+)>", links).group(1)
        assert mailto.startswith("peace-leave+")
        send_mail(server.port, "ben@example.net", [mailto],
                  f"From: ben@example.net\nTo: {mailto}\nSubject: unsubscribe\n\n")
        sink.wait_for_recipient("ben@example.net", count=2)
    members = json.loads(listserv("member", "list", "peace", "--json", site=folder).stdout)
    assert [m["address"] for m in members] == ["ana@example.org"]


def test_mail_to_the_owner_address_reaches_the_facilitators(peace, sink):
    note = ("From: ana@example.org\nTo: peace-owner@lists.example.org\nSubject: A question\n"
            "Message-ID: <q-1@example.org>\n\nCan I post photos?\n")
    with running_server(peace) as server:
        send_mail(server.port, "ana@example.org", ["peace-owner@lists.example.org"], note)
        (forwarded,) = sink.wait_for_recipient("fac@example.org")
    assert forwarded["Subject"] == "A question"


def test_postmaster_mail_reaches_the_secretariat(peace, sink):
    note = "From: ana@example.org\nTo: postmaster@lists.example.org\nSubject: Help\n\nHi\n"
    with running_server(peace) as server:
        send_mail(server.port, "ana@example.org", ["postmaster@lists.example.org"], note)
        sink.wait_for_recipient("secretariat@example.org")


def test_a_second_serve_on_the_same_site_refuses_to_start(peace, sink):
    with running_server(peace):
        second = subprocess.run([sys.executable, "-m", "listserv", "--site", str(peace),
                                 "serve", "--listen", "127.0.0.1:0"],
                                capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert "already served by process" in second.stderr
    assert "Traceback" not in second.stderr


def test_a_config_error_names_the_key_and_the_server_does_not_start(peace):
    config = peace / "listserv.toml"
    config.write_text(config.read_text().replace('protocol = "smtp"', 'protocol = "smpt"'))
    result = listserv("serve", "--listen", "127.0.0.1:0", site=peace, check=False)
    assert result.returncode == 1
    assert "[smtp] protocol 'smpt' must be 'smtp' or 'lmtp'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_embedded_default_writes_every_message_to_the_outbox(tmp_path):
    folder = tmp_path / "site"
    listserv("init", str(folder), "--domain", "lists.example.org", "--demo")
    forums = json.loads(listserv("forum", "list", "--json", site=folder).stdout)
    assert {f["path"] for f in forums} == {"thematic", "socioprofessional", "geocultural"}
    slug = forums[0]["slug"]
    members = json.loads(listserv("member", "list", slug, "--json", site=folder).stdout)
    sender = members[0]["address"]
    with running_server(folder) as server:
        send_mail(server.port, sender, [f"{slug}@lists.example.org"],
                  f"From: {sender}\nSubject: Hello\nMessage-ID: <demo-1@example.org>\n\nHi\n")
        import time
        outbox = folder / "data" / "outbox" / "new"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not list(outbox.glob("*")):
            time.sleep(0.1)
    files = list(outbox.glob("*"))
    assert files, "nothing reached the outbox"
    assert any(b"Subject: [" + slug.encode() + b"] Hello" in f.read_bytes() for f in files)


def test_refusals_at_rcpt_through_the_running_server(peace):
    with running_server(peace) as server:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send_mail(server.port, "ana@example.org", ["nobody@lists.example.org"], POST)


def test_https_one_click_post_unsubscribes_and_a_get_only_shows_a_button(tmp_path, sink):
    import urllib.request

    from helpers import free_port
    web_port = free_port()
    folder = make_site(tmp_path, sink, web_url="https://lists.example.org")
    config = folder / "listserv.toml"
    config.write_text(config.read_text().replace('listen = "127.0.0.1:0"',
                                                 f'listen = "127.0.0.1:{web_port}"'))
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             site=folder)
    for address in ("ana@example.org", "ben@example.net"):
        listserv("member", "add", "peace", address, "--preconfirmed", site=folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST)
        (copy,) = sink.wait_for_recipient("ben@example.net")
        link = re.search(r"<(https://[^>]+)>", copy["List-Unsubscribe"]).group(1)
        local = link.replace("https://lists.example.org", f"http://127.0.0.1:{web_port}")
        page = urllib.request.urlopen(local, timeout=10).read().decode()
        assert "<form method=\"post\"" in page
        members = json.loads(listserv("member", "list", "peace", "--json", site=folder).stdout)
        assert len(members) == 2, "a GET (a link scanner) must not unsubscribe"
        request = urllib.request.Request(local, data=b"List-Unsubscribe=One-Click",
                                         method="POST")
        assert urllib.request.urlopen(request, timeout=10).status == 200
        forged = urllib.request.Request(local[:-3] + "aaa", data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=10)
        assert refused.value.code == 400
    members = json.loads(listserv("member", "list", "peace", "--json", site=folder).stdout)
    assert [m["address"] for m in members] == ["ana@example.org"]


def test_a_broken_site_template_is_not_used_nothing_is_blocked_and_status_shows_it(peace,
                                                                                   sink):
    broken = peace / "templates" / "en"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "help.txt").write_text("Subject: Help\n\n{% for x in %}\n")
    request = ("From: ana@example.org\nTo: peace-request@lists.example.org\nSubject: help\n"
               "Message-ID: <help-1@example.org>\n\nhelp\n")
    with running_server(peace) as server:
        send_mail(server.port, "ana@example.org", ["peace-request@lists.example.org"],
                  request)
        post = POST.replace("water-1", "water-2")
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], post)
        sink.wait_for_recipient("ben@example.net")  # the queue is not blocked
        (answer,) = [m for m in sink.wait_for_recipient("ana@example.org", 2)
                     if m["Subject"].startswith("How to use")]  # the shipped help instead
        assert "peace-request@lists.example.org" in answer.get_content()
        import time
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = listserv("status", site=peace).stdout
            if "help.txt" in status:
                break
            time.sleep(0.3)
    assert "help.txt" in status, status


def test_stopping_while_a_scheduled_job_waits_lets_it_finish_without_a_traceback(tmp_path, sink):
    """SIGTERM while the publications job is waiting for the store: the job ends
    in its own time, nothing is cancelled mid-write, the log stays clean."""
    import sqlite3
    import time

    folder = make_site(tmp_path, sink)
    config = folder / "listserv.toml"
    text = config.read_text()
    digest = text.index("[digest]")
    config.write_text(text[:digest] + text[digest:].replace('check_every = "1m"',
                                                            'check_every = "1s"', 1))
    server = Server(folder).start()
    try:
        time.sleep(2)  # the first runs are done; the job now runs every second
        holder = sqlite3.connect(str(folder / "data" / "listserv.db"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the site's writer waits for this lock
        time.sleep(1.5)  # the publications job is now waiting on its write
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert server.process.poll() is None  # it waits for the job, not cut it off
        holder.execute("ROLLBACK")
        holder.close()
        assert server.process.wait(20) == 0
    finally:
        output = server.stop()
    assert "Traceback" not in output, output[-3000:]
    assert "CancelledError" not in output
    assert "cut off" not in output
