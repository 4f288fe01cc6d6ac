"""The handover process: `listserv serve` speaks SMTP from a child process.

What is promised: mail goes out the same way as from the server's own
process; a handover process that dies loses nobody (its transactions are
retried and a new one starts); it never outlives the server, whether the
server stops cleanly or is killed; `[delivery] own_process = false` keeps
SMTP in the server's process.
"""

from __future__ import annotations

import os
import signal
import smtplib
import sqlite3
import time

from helpers import Server, child_processes, listserv, make_site, process_alive, wait_until


def forum_with_members(tmp_path, sink, count: int, *config: tuple[str, str]):
    site = make_site(tmp_path, sink)
    path = site / "listserv.toml"
    text = path.read_text().replace("batch_size = 100", "batch_size = 10")
    for old, new in config:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--policy", "open", site=site)
    members = [f"m{n}@d{n % 7}.example.org" for n in range(count)]
    roster = tmp_path / "members.csv"
    roster.write_text("address\n" + "\n".join(members) + "\n")
    listserv("member", "import", "peace", str(roster), site=site)
    return site, members


def post(server: Server, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.sendmail("ana@example.org", ["peace@lists.example.org"],
                      f"From: ana@example.org\r\nSubject: {subject}\r\n"
                      f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\n\r\n"
                      f"About {subject}.\r\n".encode())


def recipients_of(sink, subject: str) -> set[str]:
    return {r for c in sink.caught if subject in str(c.message["Subject"])
            for r in c.rcpt_tos}


def test_a_killed_handover_process_is_replaced_and_nobody_misses_the_post(tmp_path, sink):
    site, members = forum_with_members(tmp_path, sink, 300)
    sink.handler.delay = 0.05  # transactions take a while: the kill lands mid-way
    server = Server(site).start()
    try:
        post(server, "First news")
        wait_until(lambda: len(sink.recipients()) >= 60, 30, "a fifth of the fan-out")
        [handover] = child_processes(server.process.pid)
        os.kill(handover, signal.SIGKILL)
        assert len(recipients_of(sink, "First news")) < len(members), \
            "the fan-out ended before the kill; slow the sink"
        sink.handler.delay = 0
        wait_until(lambda: recipients_of(sink, "First news") == set(members), 60,
                   "every member to get the post from a new handover process")
        [replacement] = child_processes(server.process.pid)
        assert replacement != handover and not process_alive(handover)
        post(server, "Second news")  # the new process carries on with new mail
        wait_until(lambda: recipients_of(sink, "Second news") == set(members), 30,
                   "every member to get the second post")
    finally:
        output = server.stop()
    assert "handover process ended" in output
    assert "Traceback" not in output
    assert server.process.returncode == 0


def test_the_handover_process_ends_with_a_clean_stop(tmp_path, sink):
    site, members = forum_with_members(tmp_path, sink, 20)
    server = Server(site).start()
    try:
        post(server, "Hello")
        wait_until(lambda: recipients_of(sink, "Hello") == set(members), 30, "the post")
        [handover] = child_processes(server.process.pid)
    finally:
        output = server.stop()
    assert server.process.returncode == 0, output
    wait_until(lambda: not process_alive(handover), 5, "the handover process to end")


def test_own_process_false_speaks_smtp_from_the_server_itself(tmp_path, sink):
    site, members = forum_with_members(tmp_path, sink, 20,
                                       ("own_process = true", "own_process = false"))
    server = Server(site).start()
    try:
        post(server, "Hello")
        wait_until(lambda: recipients_of(sink, "Hello") == set(members), 30, "the post")
        assert child_processes(server.process.pid) == []
    finally:
        output = server.stop()
    assert server.process.returncode == 0, output


def test_when_a_destination_fails_the_transactions_waiting_for_it_are_not_tried(
        tmp_path, sink):
    site, members = forum_with_members(
        tmp_path, sink, 100, ('retry_schedule = ["1s", "2s"]', 'retry_schedule = ["4s"]'))
    refusals = []

    def closing(recipient: str) -> str:
        refusals.append(recipient)
        return "421 4.3.2 Closing for maintenance"

    sink.handler.answer = closing
    server = Server(site).start()
    try:
        post(server, "Outage")
        wait_until(lambda: refusals, 20, "the first transaction to be refused")
        time.sleep(1.5)  # a second transaction, had it been tried, is refused by now
        assert len(refusals) == 1, refusals
        sink.handler.answer = lambda recipient: None
        wait_until(lambda: recipients_of(sink, "Outage") == set(members), 30,
                   "every member to get the post once the destination is back")
    finally:
        output = server.stop()
    assert "Traceback" not in output
    attempts = sqlite3.connect(site / "data" / "listserv.db").execute(
        "SELECT attempts, sum(size) FROM deliveries GROUP BY attempts").fetchall()
    assert attempts == [(1, 90), (2, 10)], attempts  # only the refused ones count a try
