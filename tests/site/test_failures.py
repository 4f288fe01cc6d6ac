"""Failures the server must survive, driven through `listserv serve` and the CLI.

A message whose handling keeps raising is tried MAX_ATTEMPTS times, with
waits between the tries, then set aside as 'failed' with its reason, shown by `listserv status`, while the
rest of the mail flows. A full disk (a file-size limit on the server
process, so writes fail with EFBIG) gets a temporary 451 at DATA, never a
250 for a message that is not on disk, and ends the transaction so the
client may go on; after a restart without the limit every message that got
250 is there and mail flows again. When the space comes back while the
server runs, what it could not record meanwhile is recorded then, and
nobody gets a copy twice. Over LMTP the 451 comes once per recipient, as
LMTP's replies to DATA do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import resource
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest
from helpers import (
    Server,
    free_port,
    listserv,
    make_site,
    query,
    running_intake,
    send_mail,
    wait_for_port,
    wait_until,
    write_site,
)

from listserv.intake.pipeline import MAX_ATTEMPTS
from listserv.serve import Wakeable
from listserv.site import forums, members
from listserv.site.folder import Site

DOMAIN = "lists.example.org"


def post(subject: str, message_id: str, to: str = f"peace@{DOMAIN}") -> str:
    return (f"From: Ana <ana@example.org>\nTo: {to}\nSubject: {subject}\n"
            f"Message-ID: <{message_id}>\n\n{subject}, in a few words.\n")


def add_forums(folder, forums_members: dict[str, list[str]]) -> None:
    """Open forums with members, written through the library (quicker than a
    CLI process per row; the CLI is tested elsewhere)."""
    site = Site(folder)
    now = datetime.now(timezone.utc)
    try:
        for slug, addresses in forums_members.items():
            forums.create(site.db, slug, title=slug.title(), path="thematic", policy="open",
                          now=now)
            for address in addresses:
                members.add(site.db, slug, address, now=now, languages=("en",))
    finally:
        site.db.conn.close()


# -- a message that keeps failing ------------------------------------------------------
def test_a_message_that_keeps_failing_is_set_aside_after_a_few_tries_and_status_shows_why(
        tmp_path, sink):
    site = make_site(tmp_path, sink)
    config = site / "listserv.toml"  # tries 2 s, then 4 s apart
    config.write_text(config.read_text().replace('retry_handling = "1s"',
                                                 'retry_handling = "2s"'))
    add_forums(site, {"peace": ["ben@example.net"], "water": ["cleo@example.net"]})
    # A hand edit of the database puts text where water's size limit (a number)
    # belongs: checking any post against it raises TypeError in the pipeline.
    conn = sqlite3.connect(str(site / "data" / "listserv.db"))
    with conn:
        conn.execute("UPDATE forums SET max_size = 'lots' WHERE slug = 'water'")
    conn.close()

    server = Server(site).start()
    try:
        send_mail(server.port, "ana@example.org", [f"water@{DOMAIN}"],
                  post("Wells", "wells-1@example.org", to=f"water@{DOMAIN}"))
        send_mail(server.port, "ana@example.org", [f"peace@{DOMAIN}"],
                  post("Truce", "truce-1@example.org"))
        ((bad_id,),) = query(site, "SELECT id FROM messages WHERE rcpt_tos LIKE '%water@%'")
        sink.wait_for_recipient("ben@example.net", timeout=10)  # the good post flows
        # Between its tries, status shows the message waiting for the next one.
        wait_until(lambda: query(site, "SELECT status, attempts FROM messages WHERE id = ?",
                                 [bad_id])[0] == ("received", 2), 10, "a second failed try")
        # The text first: the JSON taken after it still showing the message
        # waiting proves the text was taken while it waited too.
        waiting_text = listserv("status", site=site).stdout
        waiting = json.loads(listserv("status", "--json", site=site).stdout)["messages"]
        wait_until(lambda: query(site, "SELECT status FROM messages WHERE id = ?",
                                 [bad_id])[0][0] == "failed", 15,
                   "the failing message to be set aside")
        # Mail still flows after the message is set aside; the pipeline runs
        # again for this post and leaves the set-aside message alone.
        send_mail(server.port, "ana@example.org", [f"peace@{DOMAIN}"],
                  post("Harvest", "harvest-1@example.org"))
        sink.wait_for(lambda s: len(s.messages_to("ben@example.net")) == 2, 10,
                      "the second good post")
        status, attempts, error = query(
            site, "SELECT status, attempts, error FROM messages WHERE id = ?", [bad_id])[0]
        report = json.loads(listserv("status", "--json", site=site).stdout)
        text = listserv("status", site=site).stdout
    finally:
        output = server.stop()
    assert server.process.returncode == 0, output

    assert (status, attempts) == ("failed", MAX_ATTEMPTS)
    assert error.startswith("TypeError:") and "'>'" in error
    # Each try was rolled back whole: no half-made post on water, nothing sent there.
    assert query(site, "SELECT count(*) FROM posts p JOIN forums f ON f.id = p.forum_id "
                       "WHERE f.slug = 'water'")[0][0] == 0
    assert sink.messages_to("cleo@example.net") == []
    # The tries are spaced ([site] retry_handling = "1s" here, doubled each time),
    # so a passing cause has time to clear: not three failures in a millisecond.
    tries = [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in re.findall(
        rf"^(\S+ \S+) ERROR \S+: processing message {bad_id} failed", output, re.M)]
    assert len(tries) == MAX_ATTEMPTS, output
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(tries, tries[1:])]
    assert gaps[0] >= 1.95 and gaps[1] >= 3.95, gaps
    (retrying,) = waiting["retrying"]
    assert (retrying["id"], retrying["attempts"], retrying["subject"]) == (bad_id, 2, "Wells")
    assert retrying["error"].startswith("TypeError:") and waiting["failed"] == []
    waited = (datetime.fromisoformat(retrying["next_try"])
              - datetime.fromisoformat(retrying["received_at"])).total_seconds()
    assert waited >= 5, retrying  # at least 2 s, then 4 s after the first try
    assert "Failed, to be tried again:" in waiting_text
    assert re.search(rf"^\s*{bad_id}\s+ana@example\.org\s+Wells\s+2\s", waiting_text, re.M)

    (failed,) = report["messages"]["failed"]
    assert (failed["id"], failed["attempts"], failed["error"]) == (bad_id, MAX_ATTEMPTS, error)
    assert failed["mail_from"] == "ana@example.org"
    assert failed["subject"] == "Wells"  # read again: the failed tries' record was undone
    assert report["messages"]["counts"] == {"done": 2, "failed": 1}
    assert "Set aside after failing" in text
    line = next(line for line in text.splitlines() if line.strip().startswith(str(bad_id)))
    assert "ana@example.org" in line and "TypeError" in line
    assert re.search(rf"ana@example\.org\s+Wells\s+{MAX_ATTEMPTS}\s+TypeError", line), line


@pytest.mark.parametrize("repeat_every, lines", [(3600.0, 0), (0.0, 5)])
@pytest.mark.parametrize("error, foreseen", [
    (OSError(28, "No space left on device"), True),
    (sqlite3.OperationalError("database or disk is full"), True),
    (KeyError("forum_id"), False)])
def test_a_stage_that_keeps_failing_logs_one_line_then_a_line_now_and_then(
        caplog, repeat_every, lines, error, foreseen):
    """The stages of `serve` retry a failed step every second; on a full disk
    that went on for as long as the disk stayed full. The first failure is
    one line naming the stage and the error when we foresee it (a full disk,
    a locked database), else a traceback, once; after it, a line when
    REPEAT_EVERY (a minute in the server) has passed."""
    calls = []

    async def scenario() -> None:
        stop = asyncio.Event()

        async def step() -> bool:
            calls.append(1)
            if len(calls) <= 6:
                raise error
            stop.set()
            return False
        stage = Wakeable("pipeline", step, idle=0.001)
        stage.REPEAT_EVERY = repeat_every
        await stage.run(stop)

    caplog.set_level(logging.INFO, logger="listserv.serve")
    asyncio.run(scenario())
    records = [r for r in caplog.records if r.name == "listserv.serve"]
    what = f"{type(error).__name__}: {error}"
    assert len(calls) == 7
    first = records[0]
    if foreseen:
        assert first.getMessage() == f"pipeline failed; retrying shortly: {what}"
        assert not any(r.exc_info for r in records)  # no traceback for a full disk
    else:
        assert [r.getMessage() for r in records if r.exc_info] == [
            "pipeline failed; retrying shortly"]  # one traceback for six failures
    repeats = [r.getMessage() for r in records if "still failing" in r.getMessage()]
    assert len(repeats) == lines, repeats
    assert all(what in line for line in repeats)
    assert records[-1].getMessage() == "pipeline works again after 6 failed tries"


# -- a full disk -------------------------------------------------------------------------
# Started through a small Python wrapper rather than Popen's preexec_fn (not safe
# while the test process runs the sink's thread): it ignores SIGXFSZ, so a write
# past the limit fails with EFBIG instead of killing the server, lowers the
# file-size limit (the soft one: the hard one stays, so a test can lift it
# again, as when space is freed), and execs `listserv serve`. Both survive exec.
LIMITED = ("import os, resource, signal, sys\n"
           "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
           "limit = int(sys.argv[1])\n"
           "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))\n"
           "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n")


def start_with_file_size_limit(site, limit: int, log) -> tuple[int, subprocess.Popen]:
    """`listserv serve` that cannot grow any file past `limit` bytes (a full
    disk); returns its port and process. Its output goes to the open file `log`:
    a pipe nobody reads would fill with the stages' retry tracebacks and stall it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", LIMITED, str(limit), "-m", "listserv", "--site", str(site),
         "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wait_for_port(port, process=process)
    return port, process


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def numbered(n: int) -> bytes:
    """A 16 KB post of its own text (the same text again would be held as a loop):
    a few fill the room left in the database files."""
    return (f"From: ana@example.org\r\nTo: peace@{DOMAIN}\r\nSubject: Report {n}\r\n"
            f"Message-ID: <report-{n}@example.org>\r\n\r\n"
            + "".join(f"Report {n}, field note {line}: wells, pumps and filters.\r\n"
                      for line in range(300))).encode()


def stored_message_ids(site) -> set[str]:
    found = set()
    for (raw,) in query(site, "SELECT raw FROM messages"):
        match = re.search(rb"Message-ID: <(report-\d+)@example.org>", raw)
        if match:
            found.add(match.group(1).decode())
    return found


def test_a_full_disk_answers_451_never_250_and_no_message_that_got_250_is_lost(
        tmp_path, sink):
    site = make_site(tmp_path, sink)
    add_forums(site, {"peace": ["ben@example.net"]})
    data = site / "data"
    room = 64 * 1024
    limit = max(path.stat().st_size for path in data.glob("listserv.db*")) + room
    log_path = tmp_path / "serve.log"
    replies: dict[str, object] = {}
    with log_path.open("wb") as log:
        port, process = start_with_file_size_limit(site, limit, log)
        try:
            for n in range(60):
                key = f"report-{n}"
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                        client.sendmail("ana@example.org", [f"peace@{DOMAIN}"], numbered(n))
                    replies[key] = 250
                except smtplib.SMTPDataError as error:
                    replies[key] = (error.smtp_code, error.smtp_error.decode())
                except (OSError, smtplib.SMTPException) as error:  # a drop, a 5xx: wrong
                    replies[key] = repr(error)
                if sum(reply != 250 for reply in replies.values()) == 5:
                    break  # the disk is full and stays full
            assert process.poll() is None, "the server died on a full disk"
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.ehlo()
                client.mail("ana@example.org")
                client.rcpt(f"peace@{DOMAIN}")
                code, text = client.data(numbered(99))
                # The 451 ended the transaction (RFC 5321 4.1.1.4): a new one
                # may start on the same connection without RSET.
                after = client.mail("ana@example.org")
        finally:
            stop(process)
    full_output = log_path.read_text(errors="replace")

    assert code == 451 and b"try again later" in text, (code, text)
    assert after[0] == 250, after
    accepted = {key for key, reply in replies.items() if reply == 250}
    refused = {key: reply for key, reply in replies.items() if reply != 250}
    assert accepted and refused, (replies, full_output[-3000:])
    for key, reply in refused.items():
        assert isinstance(reply, tuple) and reply[0] == 451, (key, reply)
        assert "try again later" in reply[1]
    assert "disk I/O error" in full_output or "disk is full" in full_output
    # A stage that kept failing the same way while the disk was full (if one had
    # work then) logged one traceback, not one a second.
    stages = re.findall(r"ERROR listserv\.serve: (\w+) failed; retrying shortly", full_output)
    assert len(stages) == len(set(stages)), stages
    # Foreseen: each failure is one line naming what failed and the error, and no
    # stage logs a traceback for it.
    assert "Traceback" not in full_output, full_output[-3000:]
    for line in full_output.splitlines():
        if "failed; retrying shortly" in line:
            assert re.search(r"\w+ failed; retrying shortly: (OperationalError|OSError): ", line), line

    server = Server(site).start()  # the disk has room again
    try:
        assert stored_message_ids(site) == accepted  # every 250 kept; no 451 half-kept
        send_mail(server.port, "ana@example.org", [f"peace@{DOMAIN}"], numbered(100))
        expected = {f"<{key}@example.org>" for key in accepted | {"report-100"}}
        sink.wait_for(lambda s: expected <= {m["Message-ID"] for m in
                                             s.messages_to("ben@example.net")},
                      15, "every accepted post, and a new one, to reach the member")
    finally:
        server.stop()
    assert query(site, "SELECT status, count(*) FROM messages GROUP BY status") == \
        [("done", len(accepted) + 1)]


def test_when_the_disk_has_room_again_the_running_server_carries_on_and_sends_no_one_twice(
        tmp_path, sink):
    """No restart: the disk fills while a post's copies are being handed over, so
    what came of them cannot be written; then the space comes back. The
    outcomes are written then (not left for a restart, which would send the
    copies again), the post that got 451 meanwhile is accepted when it comes
    again, every member gets every post once, and the stages that failed say
    they work again. The disk is the running server's file-size limit, set
    and lifted with prlimit; its output goes to a pipe, which no limit stops."""
    site = make_site(tmp_path, sink)
    addresses = ["ben@example.net", "cleo@example.org", "dan@example.org"]
    add_forums(site, {"peace": addresses})
    handing_over = threading.Event()
    sink.handler.answer = lambda rcpt: handing_over.set()  # accepts: returns None
    sink.handler.delay = 1.0  # each DATA: time to fill the disk before its reply
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", LIMITED, str(1 << 30), "-m", "listserv", "--site", str(site),
         "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(
        line.decode(errors="replace") for line in process.stdout), daemon=True)
    reader.start()
    output = lambda: "".join(lines)  # noqa: E731
    try:
        wait_for_port(port, process=process)
        send_mail(port, "ana@example.org", [f"peace@{DOMAIN}"], numbered(0))
        assert handing_over.wait(20), "the post was not handed over"
        # From now on no file can be written past its first byte: a full disk.
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
        wait_until(lambda: "could not record the outcome" in output(), 20,
                   "an outcome that cannot be written")
        try:
            send_mail(port, "ana@example.org", [f"peace@{DOMAIN}"], numbered(1))
            raise AssertionError("a 250 on a full disk")
        except smtplib.SMTPDataError as error:
            assert error.smtp_code == 451, error
        sink.handler.delay = 0
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE,  # space again
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        send_mail(port, "ana@example.org", [f"peace@{DOMAIN}"], numbered(1))  # sent again
        everything = ["<report-0@example.org>", "<report-1@example.org>"]
        for member in addresses:
            sink.wait_for(lambda s: set(everything) <= {m["Message-ID"] for m in
                                                        s.messages_to(member)},
                          30, f"both posts to reach {member}")
        # Written while running: no row waits for a restart to be queued again.
        wait_until(lambda: query(site, "SELECT DISTINCT status FROM deliveries") ==
                   [("sent",)], 20, "every delivery to be recorded as sent")
        assert process.poll() is None, "the server stopped"
    finally:
        stop(process)
        reader.join(10)
    assert "trying again in" in output()  # the outcome's write was retried, not given up
    for member in addresses:
        assert sorted(m["Message-ID"] for m in sink.messages_to(member)) == everything
    assert query(site, "SELECT status, count(*) FROM messages GROUP BY status") == \
        [("done", 2)]
    failed_stages = set(re.findall(r"listserv\.serve: (\w+) failed; retrying", output()))
    again = set(re.findall(r"listserv\.serve: (\w+) works again after", output()))
    assert failed_stages == again, output()[-3000:]  # each stage that failed recovered


def test_over_lmtp_a_message_that_cannot_be_stored_gets_a_451_for_each_recipient(
        tmp_path, sink):
    """LMTP answers DATA once per accepted recipient; a failed store must too, or
    the client waits for replies that never come."""
    site = Site(write_site(tmp_path / "site", sink.port, extra='[smtp]\nprotocol = "lmtp"\n'),
                busy_timeout=0.3)
    add_forums(site.folder, {"peace": []})
    rcpts = [f"peace@{DOMAIN}", f"peace-owner@{DOMAIN}"]
    with running_intake(site) as port, socket.create_connection(("127.0.0.1", port),
                                                                timeout=5) as conn:
        replies = conn.makefile("rb")
        blocker = sqlite3.connect(str(site.db_path), isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # the database cannot take the message
        try:
            assert replies.readline().startswith(b"220")
            conn.sendall(b"LHLO client.example.org\r\n")
            while replies.readline()[3:4] == b"-":
                pass
            for command in (b"MAIL FROM:<ana@example.org>",
                            *(b"RCPT TO:<%s>" % r.encode() for r in rcpts), b"DATA"):
                conn.sendall(command + b"\r\n")
                assert replies.readline()[:1] in (b"2", b"3"), command
            conn.sendall(post("Truce", "truce-9@example.org").replace("\n", "\r\n").encode()
                         + b".\r\n")
            answers = [replies.readline() for _ in rcpts]  # times out if one is missing
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        conn.sendall(b"MAIL FROM:<ana@example.org>\r\n")  # the transaction is over
        after = replies.readline()
    assert all(answer.startswith(b"451 4.3.0") for answer in answers), answers
    assert after.startswith(b"250"), after
    assert query(site.folder, "SELECT count(*) FROM messages")[0][0] == 0
