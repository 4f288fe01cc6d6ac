"""Limits of the edge, with real sockets against a running server: connections
in all and per address, clients that say nothing or trickle, 10,000 RCPTs."""

from __future__ import annotations

import smtplib
import socket
import time
from contextlib import ExitStack

import pytest
from helpers import Server, listserv, query, running_sink, write_site

DOMAIN = "lists.example.org"
POST = (f"From: Ana <ana@example.org>\r\nTo: peace@{DOMAIN}\r\nSubject: Water\r\n"
        f"Message-ID: <limits-1@example.org>\r\n\r\nClean water.\r\n").encode()


def limits_site(tmp_path, sink, **smtp) -> Server:
    lines = "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in smtp.items())
    site = write_site(tmp_path / "site", sink.port, extra=f"[smtp]\n{lines}")
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic", site=site)
    listserv("member", "add", "peace", "ana@example.org", "--preconfirmed", site=site)
    return Server(site)


@pytest.fixture
def sink():
    with running_sink() as caught:
        yield caught


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A client socket from `source` (any 127.x.y.z is this machine's loopback)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=(source, 0))
    return conn


def greeting(conn: socket.socket) -> bytes:
    conn.settimeout(10)
    return conn.recv(1024)


def served_within(port: int, seconds: float) -> float:
    """Time for a whole ordinary transaction from a fresh client; fails past `seconds`."""
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=seconds) as client:
        client.sendmail("ana@example.org", [f"peace@{DOMAIN}"], POST)
    took = time.monotonic() - started
    assert took < seconds, f"a normal client took {took:.2f}s"
    return took


def test_two_hundred_idle_connections_from_one_address_do_not_stop_a_normal_client(
        tmp_path, sink):
    server = limits_site(tmp_path, sink, max_per_ip=20).start()
    try:
        with ExitStack() as stack:
            idle = [stack.enter_context(connect(server.port, "127.0.0.2")) for _ in range(200)]
            answers = [greeting(conn) for conn in idle]
            assert sum(a.startswith(b"220") for a in answers) == 20
            refused = [a for a in answers if a.startswith(b"421")]
            assert len(refused) == 180 and b"too many connections from 127.0.0.2" in refused[0]
            served_within(server.port, 1.0)
    finally:
        server.stop()
    assert query(server.site, "SELECT count(*) FROM messages") == [(1,)]


def test_two_hundred_idle_connections_from_many_addresses_still_leave_room(tmp_path, sink):
    server = limits_site(tmp_path, sink, max_connections=250, max_per_ip=5).start()
    try:
        with ExitStack() as stack:
            idle = [stack.enter_context(connect(server.port, f"127.0.{1 + n // 100}.{n % 100 + 2}"))
                    for n in range(200)]
            assert all(greeting(conn).startswith(b"220") for conn in idle)
            served_within(server.port, 1.0)
            time.sleep(0.2)  # the normal client's connection is counted out
            more = [stack.enter_context(connect(server.port, f"127.0.9.{n + 2}"))
                    for n in range(60)]
            answers = [greeting(conn) for conn in more]
            assert sum(a.startswith(b"220") for a in answers) == 50  # 250 in all
    finally:
        server.stop()


def test_a_client_that_says_nothing_is_told_421_and_dropped(tmp_path, sink):
    server = limits_site(tmp_path, sink, command_timeout="2s").start()
    try:
        with connect(server.port) as conn:
            assert greeting(conn).startswith(b"220")
            started = time.monotonic()
            conn.settimeout(10)
            data = conn.recv(1024)
            assert data.startswith(b"421 4.4.2") and b"no complete command" in data
            assert conn.recv(1024) == b""  # closed
            assert 1.5 < time.monotonic() - started < 5
    finally:
        server.stop()


def answer_within(conn: socket.socket, seconds: float) -> bytes | None:
    """What the server says (b'' when it closed) within `seconds`, else None."""
    conn.settimeout(seconds)
    try:
        return conn.recv(1024)
    except socket.timeout:
        return None


def test_a_client_sending_one_byte_every_ten_seconds_is_dropped(tmp_path, sink):
    server = limits_site(tmp_path, sink, command_timeout="12s").start()
    try:
        with connect(server.port) as conn:
            assert greeting(conn).startswith(b"220")
            started = time.monotonic()
            conn.sendall(b"E")
            assert answer_within(conn, 10) is None  # still open: 12s for the command
            conn.sendall(b"H")  # a byte 10s later does not buy more time
            data = answer_within(conn, 8)
            took = time.monotonic() - started
            assert data is not None and data.startswith(b"421 4.4.2"), data
            assert 11 < took < 15, took
            assert answer_within(conn, 2) == b""  # and closed
    finally:
        server.stop()


def test_a_transaction_that_takes_too_long_is_ended_with_421(tmp_path, sink):
    server = limits_site(tmp_path, sink, command_timeout="3s", transaction_timeout="4s").start()
    try:
        with connect(server.port) as conn:
            reader = conn.makefile("rb")
            assert reader.readline().startswith(b"220")
            for line in (b"HELO client.example.net", b"MAIL FROM:<ana@example.org>",
                         f"RCPT TO:<peace@{DOMAIN}>".encode(), b"DATA"):
                conn.sendall(line + b"\r\n")
                assert reader.readline()[:1] in (b"2", b"3")
                time.sleep(0.5)
            started = time.monotonic()
            for _ in range(10):  # data lines keep coming, never the end of data
                conn.sendall(b"more text\r\n")
                time.sleep(0.5)
                conn.settimeout(0.1)
                try:
                    if conn.recv(1024, socket.MSG_PEEK):
                        break
                except socket.timeout:
                    pass
            conn.settimeout(10)
            assert reader.readline().startswith(b"421 4.4.2")
            assert time.monotonic() - started < 4.5
    finally:
        server.stop()
    assert query(server.site, "SELECT count(*) FROM messages") == [(0,)]


def test_ten_thousand_rcpts_in_one_transaction_are_answered_and_stored_once(tmp_path, sink):
    server = limits_site(tmp_path, sink).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
            client.ehlo()
            client.mail("ana@example.org")
            codes = [client.rcpt(f"peace@{DOMAIN}")[0]]
            codes += [client.rcpt(f"member{n}@{DOMAIN}")[0] for n in range(4999)]
            codes += [client.rcpt(f"peace-request@{DOMAIN}")[0] for _ in range(5000)]
            assert codes[0] == 250 and set(codes[1:5000]) == {550}
            assert codes[5000:5099] == [250] * 99 and set(codes[5099:]) == {452}
            code, text = client.data(POST)
            assert code == 250
    finally:
        server.stop()
    (rcpts,) = query(server.site, "SELECT rcpt_tos FROM messages")[0]
    assert rcpts.count("peace-request@") == 99 and rcpts.count('"peace@') == 1
