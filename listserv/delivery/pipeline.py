"""One SMTP connection's transactions, pipelined where the server offers it.

aiosmtplib opens the session (connect, implicit TLS or STARTTLS, EHLO,
AUTH); then `Connection` takes the transport over and runs the
transactions itself. aiosmtplib reads one reply per command written and
drops what arrives while no command waits for it, so it cannot send MAIL,
the RCPTs and DATA in one write and read their replies together (RFC 2920).
On the personalised path (one recipient per transaction) that lockstep is a
system call and a round trip per command; here, where the server offers
PIPELINING, a transaction is two writes (the envelope with DATA, then the
message) and its replies are read from the same buffer in order. Where it
does not, each command waits for its reply, as RFC 5321 requires.

`Connection.transaction` returns the server's replies as they are
(`Replies`): what they mean for the queue is `smtpout.py`'s business. It
reads and writes no database and no files.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass, field

import aiosmtplib

CRLF = b"\r\n"
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
MAX_REPLY_BYTES = 64 * 1024  # a reply (all its lines) longer than this is not SMTP


class Disconnected(ConnectionError):
    """The server closed the connection, or said something that is not SMTP."""


class Stale(Disconnected):
    """The connection was gone before the server answered MAIL: nothing of this
    transaction can have been taken, so it may be tried again on a new one."""


@dataclass
class Replies:
    """What the server said to one transaction; `None` where a command was not
    sent (or its reply never came because the server said 421 first)."""

    mail: tuple[int, str]
    rcpt: list[tuple[int, str] | None] = field(default_factory=list)
    data: tuple[int, str] | None = None  # to DATA itself: 354 to go on
    end: tuple[int, str] | None = None  # to the message's final dot


class _Reader(asyncio.Protocol):
    """Splits what the server sends into replies, however many arrive at once."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.replies: deque[tuple[int, str]] = deque()
        self.lost: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self._lines: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.buffer.extend(data)
        end = self.buffer.rfind(b"\n")
        if end != -1:  # the complete lines, split at once (a pipelined burst holds many)
            complete = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            for line in complete.split(b"\n"):  # without its LF; a CR may end it
                if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (
                        b" ", b"-", b"\r", b""):
                    self._lose(Disconnected(f"not an SMTP reply: {line[:80]!r}"))
                    return
                if line[3:4] == b"-":
                    self._lines.append(line)
                    continue
                text = line[4:].strip(b" \t\r").decode("utf-8", "replace")
                if self._lines:  # the last line of a multiline reply
                    text = "\n".join([*(part[4:].strip(b" \t\r").decode("utf-8", "replace")
                                         for part in self._lines), text])
                    self._lines = []
                self.replies.append((int(line[:3]), text))
        if len(self.buffer) + sum(map(len, self._lines)) > MAX_REPLY_BYTES:
            self._lose(Disconnected("a reply too long to be SMTP"))
            return
        self._wake()

    def eof_received(self) -> bool:
        self._lose(Disconnected("the server closed the connection"))
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lose(Disconnected(f"connection lost: {exc}" if exc else "connection lost"))

    def _lose(self, error: BaseException) -> None:
        if self.lost is None:
            self.lost = error
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def reply(self, timeout: float) -> tuple[int, str]:
        while not self.replies:
            if self.lost is not None:
                raise self.lost
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.waiter, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError("timed out waiting for the server's reply") from None
            finally:
                self.waiter = None
        return self.replies.popleft()


def message_data(data: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, leading dots doubled,
    the final dot."""
    data = _LINE_ENDS.sub(CRLF, data)
    if not data.endswith(CRLF):
        data += CRLF
    return _LEADING_DOT.sub(b"..", data) + b".\r\n"


class Connection:
    """A session aiosmtplib opened, whose transactions now run here."""

    def __init__(self, client: aiosmtplib.SMTP, timeout: float):
        self.timeout = timeout
        self.extensions = {name.lower() for name in client.esmtp_extensions}
        self.pipelining = "pipelining" in self.extensions
        self._client = client  # keeps the TLS objects alive with the transport
        self._transport = client.protocol.transport
        self._reader = _Reader()
        self._transport.set_protocol(self._reader)

    def supports(self, extension: str) -> bool:
        return extension.lower() in self.extensions

    @property
    def is_connected(self) -> bool:
        return self._reader.lost is None and not self._transport.is_closing()

    def _write(self, data: bytes) -> None:
        if not self.is_connected:
            raise Stale(str(self._reader.lost or "connection closed"))
        self._transport.write(data)

    async def _reply(self) -> tuple[int, str]:
        return await self._reader.reply(self.timeout)

    async def _first(self) -> tuple[int, str]:
        """The reply to MAIL; a connection found gone by then is `Stale`."""
        try:
            return await self._reply()
        except Disconnected as error:
            raise Stale(str(error)) from None

    async def command(self, line: bytes) -> tuple[int, str]:
        self._write(line + CRLF)
        return await self._reply()

    async def transaction(self, sender: bytes, options: list[str], recipients: list[bytes],
                          data: bytes) -> Replies:
        """MAIL, a RCPT per recipient, DATA and the message (when any recipient was
        taken): in two writes where the server pipelines, one command at a time
        where it does not. Stops reading at a 421 (the server is closing)."""
        mail = b"MAIL FROM:<" + sender + b">" + b"".join(b" " + o.encode() for o in options)
        rcpts = [b"RCPT TO:<" + r + b">" for r in recipients]
        if self.pipelining:
            self._write(CRLF.join([mail, *rcpts, b"DATA"]) + CRLF)
            replies = Replies(mail=await self._first())
            closing = replies.mail[0] == 421  # the server is closing: read no further
            for _ in rcpts:
                if closing:
                    break
                reply = await self._reply()
                replies.rcpt.append(reply)
                closing = reply[0] == 421
            if not closing:
                replies.data = await self._reply()
        else:
            self._write(mail + CRLF)
            replies = Replies(mail=await self._first())
            closing = replies.mail[0] == 421
            if replies.mail[0] // 100 == 2:
                for line in rcpts:
                    reply = await self.command(line)
                    replies.rcpt.append(reply)
                    if reply[0] == 421:
                        closing = True
                        break
                if not closing and any(r[0] // 100 == 2 for r in replies.rcpt):
                    replies.data = await self.command(b"DATA")
        replies.rcpt += [None] * (len(rcpts) - len(replies.rcpt))
        if replies.data is not None and replies.data[0] == 354:
            taken = replies.mail[0] // 100 == 2 and any(
                r is not None and r[0] // 100 == 2 for r in replies.rcpt)
            # A server that says 354 with no recipient taken gets an empty
            # message (RFC 2920 §3.1), never the body.
            self._write(message_data(data) if taken else b".\r\n")
            replies.end = await self._reply()
        return replies

    async def quit(self) -> None:
        try:
            await asyncio.wait_for(self.command(b"QUIT"), 2)
        except (OSError, TimeoutError, asyncio.TimeoutError):
            pass

    def close(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()
        self._reader.lost = self._reader.lost or Disconnected("connection closed")
