"""Pipelining in the hand-over (RFC 2920): where the receiving server offers
PIPELINING, MAIL, every RCPT and DATA go in one write and their replies are
read together; where it does not, each command waits for its reply. Either
way each recipient's outcome is exactly what the server said of it.

The receiving end is a small scripted SMTP server on loopback that reads
what arrives in chunks and notes which commands came in each: a client that
waits for each reply can never put two commands in one chunk, and one that
pipelines puts the whole envelope in one.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import pytest
from helpers import write_site

from listserv.delivery.engine import deliver_pending
from listserv.delivery.queue import queue_message
from listserv.site.folder import Site

SENDER = "peace-bounces@lists.example.org"
BODY = (b"From: Ana <ana@example.org>\r\nTo: peace@lists.example.org\r\n"
        b"Subject: [peace] Water\r\nMessage-ID: <w1@example.org>\r\n\r\n"
        b"Wells for the valley.\r\n.A line that starts with a dot.\r\n")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


class Scripted:
    """An SMTP server whose answers the test decides: `rcpt` maps a
    recipient's local part to its reply (else 250), `data` is the reply to
    DATA (else 354, or 554 with no recipient taken), `end` the reply to the
    message. It answers everything it read in one go with one write, as a
    pipelining server does, and closes after a 421."""

    def __init__(self, pipelining: bool, rcpt: dict[str, str] | None = None,
                 data: str | None = None, end: str = "250 2.0.0 queued", dribble: int = 0):
        self.pipelining, self.rcpt, self.data, self.end = pipelining, rcpt or {}, data, end
        self.dribble = dribble  # write the replies in pieces of this many bytes (0: at once)
        self.chunks: list[list[str]] = []  # the commands that came in each read
        self.messages: list[tuple[list[str], bytes]] = []  # (recipients, message)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    def __enter__(self) -> Scripted:
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.session, "127.0.0.1", 0), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            self.server.close()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def session(self, reader, writer) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        buffer, taken, in_data = b"", [], False
        while chunk := await reader.read(65536):
            buffer += chunk
            replies, commands = [], []
            while True:
                if in_data:
                    if buffer.startswith(b".\r\n"):
                        message, buffer = b"", buffer[3:]
                    elif (end := buffer.find(b"\r\n.\r\n")) >= 0:
                        message, buffer = buffer[:end + 2], buffer[end + 5:]
                    else:
                        break
                    self.messages.append((list(taken), message))
                    replies.append(self.end)
                    taken, in_data = [], False
                    continue
                line, found, rest = buffer.partition(b"\r\n")
                if not found:
                    break
                buffer = rest
                command = line.decode()
                commands.append(command)
                verb = command[:4].upper()
                if verb == "EHLO":
                    replies.append("250-scripted\r\n" + ("250-PIPELINING\r\n" if self.pipelining
                                                         else "") + "250 8BITMIME")
                elif verb == "MAIL":
                    taken = []
                    replies.append("250 2.1.0 ok")
                elif verb == "RCPT":
                    local = command.split("<", 1)[1].split("@", 1)[0]
                    reply = self.rcpt.get(local, "250 2.1.5 ok")
                    if reply.startswith("2"):
                        taken.append(command.split("<", 1)[1].rstrip(">"))
                    replies.append(reply)
                elif verb == "DATA":
                    reply = self.data or ("354 go on" if taken else "554 5.5.1 no valid recipients")
                    in_data = reply.startswith("354")
                    replies.append(reply)
                elif verb == "QUIT":
                    replies.append("221 bye")
                else:  # RSET, NOOP
                    taken = []
                    replies.append("250 ok")
                if replies[-1].startswith(("421", "221")):
                    break
            if commands:
                self.chunks.append(commands)
            if replies:
                answer = "".join(r + "\r\n" for r in replies).encode()
                for start in range(0, len(answer), self.dribble or len(answer)):
                    writer.write(answer[start:start + (self.dribble or len(answer))])
                    await writer.drain()
                    if self.dribble:
                        await asyncio.sleep(0.001)  # each piece its own read at the client
            if replies and replies[-1].startswith(("421", "221")):
                break
        writer.close()

    def envelopes(self) -> list[list[str]]:
        """The chunks that carried a MAIL command."""
        return [chunk for chunk in self.chunks if any(c.startswith("MAIL") for c in chunk)]


def deliver(tmp_path, server: Scripted, recipients: list[str]) -> tuple[dict, dict]:
    site = Site(write_site(tmp_path / "site", server.port))
    site.write_now(queue_message, "post:1", BODY, recipients, SENDER, NOW)
    counts = deliver_pending(site, NOW)
    rows = {row["recipient"]: (row["status"], row["last_error"] or "")
            for row in site.db.query("SELECT * FROM deliveries")}
    return counts, rows


RECIPIENTS = ["ana@example.org", "full@example.org", "gone@example.org", "ben@example.org"]
REPLIES = {"full": "452 4.2.2 mailbox full", "gone": "550 5.1.1 no such user"}


def test_where_the_server_offers_pipelining_the_envelope_goes_in_one_write(tmp_path):
    with Scripted(pipelining=True, rcpt=REPLIES) as server:
        counts, rows = deliver(tmp_path, server, RECIPIENTS)
    (envelope,) = server.envelopes()
    assert envelope == ["MAIL FROM:<peace-bounces@lists.example.org>",
                        *[f"RCPT TO:<{r}>" for r in RECIPIENTS], "DATA"]
    assert counts == {"sent": 2, "deferred": 1, "bounced": 1, "failed": 0}
    assert rows["ana@example.org"][0] == rows["ben@example.org"][0] == "sent"
    assert rows["full@example.org"] == ("deferred", "452 4.2.2 mailbox full")
    assert rows["gone@example.org"][0] == "bounced"
    assert "550 5.1.1 no such user" in rows["gone@example.org"][1]
    ((taken, message),) = server.messages
    assert taken == ["ana@example.org", "ben@example.org"]
    assert b"\r\n..A line that starts with a dot.\r\n" in message  # dot-stuffed


def test_where_it_does_not_each_command_waits_for_its_reply(tmp_path):
    with Scripted(pipelining=False, rcpt=REPLIES) as server:
        counts, rows = deliver(tmp_path, server, RECIPIENTS)
    assert all(len(chunk) == 1 for chunk in server.chunks), server.chunks
    assert [c[0][:4] for c in server.chunks[1:7]] == ["MAIL", "RCPT", "RCPT", "RCPT",
                                                     "RCPT", "DATA"]
    assert counts == {"sent": 2, "deferred": 1, "bounced": 1, "failed": 0}
    assert [taken for taken, _message in server.messages] == [["ana@example.org",
                                                               "ben@example.org"]]


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_message_is_refused_for_the_recipients_that_were_taken(tmp_path, pipelining):
    with Scripted(pipelining=pipelining, rcpt=REPLIES, end="552 5.3.4 message too big") as server:
        counts, rows = deliver(tmp_path, server, RECIPIENTS)
    assert counts == {"sent": 0, "deferred": 1, "bounced": 1, "failed": 2}
    assert rows["ana@example.org"][0] == rows["ben@example.org"][0] == "failed"
    assert "552 5.3.4 message too big" in rows["ana@example.org"][1]
    assert rows["gone@example.org"][0] == "bounced"  # refused at RCPT, before the message


def test_replies_in_pieces_and_on_several_lines_are_each_recipients_own(tmp_path):
    """Gmail refuses a recipient on three lines; a server's replies may come in
    pieces that cut a line, or several replies to a read."""
    gmail = ("550-5.1.1 The email account that you tried to reach does not exist.\r\n"
             "550-5.1.1 Please try double-checking the recipient's email\r\n"
             "550 5.1.1 address for typos. - gsmtp")
    with Scripted(pipelining=True, rcpt={"gone": gmail, "full": "452 4.2.2 mailbox full"},
                  dribble=7) as server:
        counts, rows = deliver(tmp_path, server, RECIPIENTS)
    assert counts == {"sent": 2, "deferred": 1, "bounced": 1, "failed": 0}
    assert rows["gone@example.org"][0] == "bounced"
    assert "does not exist" in rows["gone@example.org"][1]
    assert "address for typos. - gsmtp" in rows["gone@example.org"][1]
    assert rows["full@example.org"][0] == "deferred"
    assert "mailbox full" in rows["full@example.org"][1]
    assert rows["ana@example.org"][0] == rows["ben@example.org"][0] == "sent"
    assert [recipients for recipients, _ in server.messages] == [
        ["ana@example.org", "ben@example.org"]]


def test_when_no_recipient_is_taken_the_message_is_never_sent(tmp_path):
    everyone = {r.split("@")[0]: "550 5.1.1 no such user" for r in RECIPIENTS}
    with Scripted(pipelining=True, rcpt=everyone) as server:
        counts, _rows = deliver(tmp_path, server, RECIPIENTS)
    assert counts["bounced"] == 4 and server.messages == []
    assert server.envelopes()[0][-1] == "DATA"  # pipelined, and DATA was refused (554)


def test_a_server_that_says_354_with_no_recipient_taken_gets_an_empty_message(tmp_path):
    everyone = {r.split("@")[0]: "550 5.1.1 no such user" for r in RECIPIENTS}
    with Scripted(pipelining=True, rcpt=everyone, data="354 go on anyway") as server:
        counts, _rows = deliver(tmp_path, server, RECIPIENTS)
    assert counts["bounced"] == 4
    assert server.messages == [([], b"")]  # RFC 2920 §3.1: a lone dot, never the body


def test_a_421_in_the_middle_of_a_pipelined_envelope_defers_everyone_and_does_not_hang(
        tmp_path):
    closing = {"full": "421 4.3.2 shutting down"}
    with Scripted(pipelining=True, rcpt=closing) as server:
        counts, rows = deliver(tmp_path, server, RECIPIENTS)
    assert counts == {"sent": 0, "deferred": 4, "bounced": 0, "failed": 0}
    assert all(status == "deferred" for status, _error in rows.values())
    assert "421 4.3.2 shutting down" in rows["ana@example.org"][1]
    assert server.messages == []
