"""Every file of the hostile corpus (tests/mail) through a running server.

Each file is sent by SMTP to one `listserv serve`, with the envelope and the
outcome written in tests/mail/expected.json; the outcome is then read where
a user would see it: the copies and replies at the sink, the hold queue,
the recorded bounces. The server must answer every file and stay up.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import time
from pathlib import Path

import pytest
from helpers import Server, listserv, make_site, query

CORPUS = Path(__file__).parent.parent / "mail"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
SMUGGLING = json.loads((CORPUS / "smuggling" / "expected.json").read_text())
# Files whose outcome depends on another file having been sent first.
ORDER = sorted(EXPECTED, key=lambda name: (1 if EXPECTED[name].get("after") else 0, name))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from helpers import Sink
    sink = Sink().start()
    site = make_site(tmp_path_factory.mktemp("hostile"), sink)
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--facilitator", "fac@example.org", site=site)
    for address in ("ana@example.org", "ben@example.org"):
        listserv("member", "add", "peace", address, "--preconfirmed", site=site)
    server = Server(site).start()
    sent: dict[str, int | tuple] = {}
    try:
        yield site, sink, server, sent
    finally:
        output = server.stop()
        sink.stop()
        assert "Traceback" not in output, output[-3000:]


def smtp_send(port: int, mail_from: str, rcpt_tos: list[str], data: bytes,
              options: list[str] = ()) -> tuple[int, str]:
    """One transaction; returns the reply to DATA (or to the first refusal)."""
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        code, text = client.mail(mail_from, list(options))
        if code != 250:
            return code, text.decode()
        for rcpt in rcpt_tos:
            code, text = client.rcpt(rcpt)
            if code >= 400:
                return code, text.decode()
        code, text = client.data(data)
        return code, text.decode(errors="replace")


def send_file(served, name: str) -> tuple[int, str]:
    site, sink, server, sent = served
    if name in sent:
        return sent[name]
    spec = EXPECTED[name]
    if spec.get("after"):
        send_file(served, spec["after"])
    envelope = spec["smtp"]
    reply = smtp_send(server.port, envelope["mail_from"], envelope["rcpt_tos"],
                      (CORPUS / name).read_bytes(), envelope.get("mail_options", ()))
    sent[name] = reply
    return reply


def stored_id(reply: tuple[int, str]) -> int:
    code, text = reply
    assert code == 250, f"expected 250, got {code} {text}"
    return int(re.search(r"Queued as (\d+)", text).group(1))


def wait_handled(site, message_id: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(site, "SELECT status FROM messages WHERE id = ?", (message_id,))
        if rows and rows[0][0] != "received":
            assert rows[0][0] == "done", f"message {message_id} was set aside: {rows}"
            return
        time.sleep(0.05)
    raise AssertionError(f"message {message_id} was not handled in {timeout}s")


def post_status(site, message_id: int, timeout: float = 20) -> tuple[str, str] | None:
    """The post's status once policy and distribution are through with it."""
    deadline = time.monotonic() + timeout
    while True:
        rows = query(site, "SELECT status, reason FROM posts WHERE message_id = ?",
                     (message_id,))
        if not rows or rows[0][0] not in ("new", "hold", "approved") \
                or time.monotonic() > deadline:
            return rows[0] if rows else None
        time.sleep(0.05)


def copies_of(sink, site, message_id: int, timeout: float = 20) -> list:
    """The copies of this message's post that reached ben."""
    header_id = query(site, "SELECT header_id FROM posts WHERE message_id = ?",
                      (message_id,))[0][0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for c in sink.caught if "ben@example.org" in c.rcpt_tos
                 and f"<{header_id}>".encode() in c.data]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no copy of message {message_id} reached ben")


def check_clean_copy(data: bytes, spec: dict) -> None:
    head, _, _ = data.partition(b"\r\n\r\n")
    assert head.isascii(), "raw 8-bit bytes in the copy's headers"
    assert b"\x00" not in data, "a NUL in the copy"
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", data), "a bare CR or LF in the copy"
    message = email.message_from_bytes(data, policy=email.policy.default)
    subject = str(message["Subject"])
    assert subject.startswith("[peace]") and subject.count("[peace]") == 1
    if "subject" in spec:
        assert subject.removeprefix("[peace] ") == spec["subject"]
    for name in spec.get("absent_headers", []):
        if name.lower() != "list-id":
            assert message[name] is None, f"{name} is in the copy"
    for text in spec.get("not_in_headers", []):
        assert text.encode() not in head
    body = "\n".join(part.get_content() for part in message.walk()
                     if part.get_content_maintype() == "text"
                     and part.get_content_disposition() != "attachment")
    for text in spec.get("in_body", []):
        assert text in body, f"{text!r} is not in the copy"
    if spec.get("html_safe"):
        for part in message.walk():
            if part.get_content_type() == "text/html":
                html = part.get_content().lower()
                for bad in ("<script", "<iframe", "<object", "<embed", "<form", "<svg",
                            "<meta", "<style", "javascript:", " on"):
                    assert bad not in re.sub(r"\s+", " ", html) or bad == " on" and \
                        not re.search(r"<[^>]*\son\w+\s*=", html), f"{bad} in the HTML"
                assert not re.search(r"<img[^>]+src=['\"]?https?:", html)


@pytest.mark.parametrize("name", ORDER)
def test_each_hostile_file_gets_its_defined_outcome(served, name):
    site, sink, server, sent = served
    spec = EXPECTED[name]
    reply = send_file(served, name)
    outcome = spec["outcome"]
    if outcome in ("smtp-error", "refuse"):
        assert reply[0] == spec.get("smtp_code", reply[0]) and reply[0] >= 500, reply
        return
    message_id = stored_id(reply)
    wait_handled(site, message_id)
    status = post_status(site, message_id)
    if outcome == "distribute":
        assert status and status[0] == "distributed", status
        for copy in copies_of(sink, site, message_id):
            check_clean_copy(copy.data, spec)
    elif outcome == "hold":
        assert status and status[0] == "held", status
        assert status[1], "a hold without a reason"
    elif outcome == "drop-silently-logged":
        assert status is None or status[0] == "ignored", status
    elif outcome == "bounce-recorded":
        assert status is None
        rows = query(site, "SELECT recipient FROM bounces WHERE recipient = ?",
                     (spec["bounce_for"],))
        assert rows, f"no bounce recorded for {spec['bounce_for']}"
    elif outcome == "bounce-not-counted":
        assert status is None
        time.sleep(0.5)
        assert query(site, "SELECT count(*) FROM bounces") == [(0,)]
        assert query(site, "SELECT bounce_score FROM members WHERE address = ?",
                     (spec["bounce_for"],)) == [(0,)]
    elif outcome == "command":
        sender = spec["smtp"]["mail_from"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _replies(sink, message_id, site, sender):
            time.sleep(0.05)
        (reply_copy,) = _replies(sink, message_id, site, sender)
        for header in spec.get("absent_headers", []):
            assert reply_copy.message[header] is None
    elif outcome == "no-reply":
        time.sleep(1.0)
        assert not _replies(sink, message_id, site, spec["smtp"]["mail_from"])
        members = json.loads(listserv("member", "list", "peace", "--json", site=site).stdout)
        assert spec["still_member"] in [m["address"] for m in members]
    for address in spec.get("never_to", []):
        assert address not in sink.recipients()


def _replies(sink, message_id: int, site, sender: str) -> list:
    header = query(site, "SELECT message_id FROM messages WHERE id = ?", (message_id,))[0][0]
    return [c for c in sink.caught if sender in c.rcpt_tos
            and f"<{header}>".encode() in c.data.partition(b"\r\n\r\n")[0]]


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smtp_smuggling_sessions_give_one_message_from_the_first_sender(served, name):
    site, sink, server, sent = served
    before = query(site, "SELECT coalesce(max(id), 0) FROM messages")[0][0]
    transcript = (CORPUS / "smuggling" / name).read_bytes()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.recv(1024)
        conn.sendall(transcript)
        time.sleep(0.5)
        conn.settimeout(2)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = query(site, "SELECT id, mail_from, status FROM messages WHERE id > ?",
                     (before,))
        if rows and all(status != "received" for _, _, status in rows):
            break
        time.sleep(0.1)
    assert [mail_from for _, mail_from, _ in rows] == SMUGGLING[name]["senders"]
    status = post_status(site, rows[0][0])
    assert status and status[0] == "held", status
