"""Durability the hard way: SIGKILL `listserv serve` mid-work, restart, count.

Promises under test (SPEC §8): a 250 means the message survives any crash;
after a restart the work resumes; no recipient gets a post twice except
those of the SMTP transactions handed over but not yet recorded at the
moment of the kill: at most `[delivery] crash_window` recipients, the bound
`listserv status` shows.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections import Counter

from helpers import (
    Caught,
    Server,
    child_processes,
    listserv,
    make_site,
    process_alive,
    query,
    wait_until,
)

CONCURRENCY, BATCH = 4, 20


def test_no_message_that_got_250_is_lost_when_the_server_is_killed_during_intake(
        tmp_path, sink):
    site = make_site(tmp_path, sink)
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--policy", "open", site=site)
    server = Server(site).start()
    accepted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(number: int) -> None:
        sent = 0
        while not stop.is_set():
            message_id = f"c{number}-{sent}@example.org"
            data = (f"From: ana@example.org\r\nSubject: {message_id}\r\n"
                    f"Message-ID: <{message_id}>\r\n\r\n" + ("x" * 70 + "\r\n") * 30).encode()
            try:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    smtp.sendmail("ana@example.org", ["peace@lists.example.org"], data)
            except (OSError, smtplib.SMTPException):
                return  # the server is gone: this message was not accepted
            with lock:
                accepted.append(message_id)
            sent += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(accepted) >= 150, 60, "150 accepted messages")
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(10)
    server = Server(site).start()
    try:
        wait_until(lambda: query(site, "SELECT count(*) FROM messages "
                                       "WHERE status = 'received'")[0][0] == 0,
                   60, "the restarted server to handle every stored message")
    finally:
        server.stop()
    stored = {row[0] for row in query(site, "SELECT header_id FROM posts")}
    missing = [m for m in accepted if m not in stored]
    assert not missing, f"{len(missing)} accepted messages were lost: {missing[:5]}"
    assert query(site, "SELECT count(*) FROM messages WHERE status = 'failed'")[0][0] == 0


def test_a_fan_out_killed_midway_resumes_and_serves_no_one_twice_outside_the_window(
        tmp_path, sink):
    site = make_site(tmp_path, sink)
    config = site / "listserv.toml"
    config.write_text(config.read_text()
                      .replace("concurrency = 8", f"concurrency = {CONCURRENCY}")
                      .replace("batch_size = 100", f"batch_size = {BATCH}"))
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--policy", "open", site=site)
    members = [f"member{n}@d{n % 30}.example.org" for n in range(3000)]
    roster = tmp_path / "members.csv"
    roster.write_text("address\n" + "\n".join(members) + "\n")
    listserv("member", "import", "peace", str(roster), site=site)
    sink.handler.delay = 0.04  # each transaction takes a while: the kill lands mid-way
    server = Server(site).start()
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.sendmail("ana@example.org", ["peace@lists.example.org"],
                      b"From: ana@example.org\r\nSubject: Big news\r\n"
                      b"Message-ID: <big-1@example.org>\r\n\r\nFor everyone.\r\n")
    wait_until(lambda: len(sink.recipients()) >= 600, 60, "a fifth of the fan-out")
    handover = child_processes(server.process.pid)
    assert handover, "the handover process should be speaking SMTP to the sink"
    server.kill()
    wait_until(lambda: not any(map(process_alive, handover)), 10,
               "the handover process to die with the server")
    before = len(sink.recipients())
    assert before < len(members), "the fan-out finished before the kill; slow the sink"
    sink.handler.delay = 0
    server = Server(site).start()
    try:
        wait_until(lambda: set(sink.recipients()) >= set(members), 90,
                   "every member to get the post after the restart")
    finally:
        server.stop()
    # The fan-out wrote a row per transaction (the members of a domain, BATCH at a
    # time), not one per member.
    rows, recipients = query(site, "SELECT count(*), sum(size) FROM deliveries "
                                   "WHERE ref LIKE 'post:%'")[0]
    assert recipients == len(members) and rows <= len(members) // BATCH + 30, rows
    copies = Counter(sink.recipients())
    twice = [address for address, count in copies.items() if count > 1]
    assert max(copies.values()) <= 2
    # The window (listserv/delivery/engine.py): handed over and not yet recorded.
    assert len(twice) <= 2 * CONCURRENCY * BATCH, f"{len(twice)} recipients served twice"
    assert sum(copies.values()) == len(members) + len(twice)


WINDOW = 40  # recipients: two transactions of 20, where 8 connections could carry 16


def test_a_kill_during_a_fan_out_to_1000_members_sends_at_most_the_crash_window_again(
        tmp_path, sink):
    """SPEC 8's bound, measured: eight connections and a handover process could
    have sixteen transactions of 20 handed over and unrecorded (320 recipients);
    with `crash_window = 40` a kill sends at most 40 recipients the post again."""
    site = make_site(tmp_path, sink)
    config = site / "listserv.toml"
    config.write_text(config.read_text()
                      .replace("batch_size = 100", "batch_size = 20")
                      .replace("crash_window = 800", f"crash_window = {WINDOW}"))
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--policy", "open", site=site)
    members = [f"member{n}@d{n % 50}.example.org" for n in range(1000)]
    roster = tmp_path / "members.csv"
    roster.write_text("address\n" + "\n".join(members) + "\n")
    listserv("member", "import", "peace", str(roster), site=site)
    status = listserv("status", site=site, check=False).stdout  # no server: exit 3
    assert f"Crash window: a crash may send at most {WINDOW} recipients a copy twice" in status
    # The sink takes each message, then is slow to say so: every transaction in
    # flight at the kill is one the sink has and the server never heard of, the
    # very window SMTP leaves.
    replying = {"delay": 0.2}

    async def take_then_reply(server, session, envelope):
        with sink.handler.lock:
            sink.handler.caught.append(Caught(envelope.mail_from, list(envelope.rcpt_tos),
                                              bytes(envelope.original_content or b"")))
        await asyncio.sleep(replying["delay"])
        return "250 OK"
    sink.handler.handle_DATA = take_then_reply
    server = Server(site).start()
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.sendmail("ana@example.org", ["peace@lists.example.org"],
                      b"From: ana@example.org\r\nSubject: Big news\r\n"
                      b"Message-ID: <window-1@example.org>\r\n\r\nFor everyone.\r\n")
    wait_until(lambda: len(sink.recipients()) >= 300, 60, "a third of the fan-out")
    server.kill()
    before = len(sink.recipients())
    assert before < len(members), "the fan-out finished before the kill; slow the sink"
    replying["delay"] = 0
    server = Server(site).start()
    try:
        wait_until(lambda: set(sink.recipients()) >= set(members), 90,
                   "every member to get the post after the restart")
    finally:
        output = server.stop()
    copies = Counter(sink.recipients())
    twice = [address for address, count in copies.items() if count > 1]
    assert len(twice) <= WINDOW, f"{len(twice)} recipients served twice"
    assert max(copies.values()) <= 2 and sum(copies.values()) == len(members) + len(twice)
    assert "Traceback" not in output
