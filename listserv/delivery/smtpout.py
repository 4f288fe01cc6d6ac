"""Handing mail over: SMTP connections kept open per destination, and the outbox.

`Pool.transact` runs one SMTP transaction (MAIL, one RCPT per recipient,
DATA: pipelined where the server offers it, see pipeline.py) on a
connection it keeps open for the next one to the same destination, and sorts every recipient into what the server said: sent,
temporary (4xx), permanent (5xx at RCPT or DATA) or failed (the message
itself was refused at MAIL). A destination that cannot be reached, times
out, says 421 or drops the connection raises `Unavailable`. `write_outbox`
is the embedded default: the message goes into a Maildir, atomically.
Reads and writes no database: `engine.py` decides what the replies mean
for the queue.
"""

from __future__ import annotations

import mailbox
import os
import re
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
from aiosmtplib import errors

from listserv.delivery.pipeline import Connection, Replies, Stale
from listserv.delivery.smarthost import OPPORTUNISTIC, Secure, client_options
from listserv.errors import ConfigError

IDLE_SECONDS = 30.0  # a connection unused this long is closed, not reused
MAILDIR = "maildir"  # the destination name of the outbox


class Unavailable(Exception):
    """The destination cannot take mail now; str() says why."""


@dataclass
class Handover:
    """What one SMTP transaction did for each of its recipients."""

    sent: list[str] = field(default_factory=list)
    temporary: dict[str, str] = field(default_factory=dict)
    permanent: dict[str, tuple[int, str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    unavailable: str = ""  # set when the destination failed part-way (the rest are temporary)


def reply_text(code: int, message: str) -> str:
    return f"{code} {' '.join(str(message).split())}"[:300]


class Pool:
    """Open SMTP connections per destination ("host:port"), reused while fresh."""

    def __init__(self, helo: str, timeout: float, secure: dict[str, Secure] | None = None):
        self.helo = helo
        self.timeout = timeout
        self.secure = secure or {}  # TLS and AUTH per destination (`smarthost`)
        self._idle: dict[str, list[tuple[Connection, float]]] = {}

    async def _connect(self, destination: str) -> Connection:
        host, _, port = destination.rpartition(":")
        secure = self.secure.get(destination, OPPORTUNISTIC)
        try:
            options = client_options(secure)
        except ConfigError as error:  # the password file went away
            raise Unavailable(f"cannot log in to {destination}: {error}") from None
        client = aiosmtplib.SMTP(hostname=host.strip("[]"), port=int(port),
                                 local_hostname=self.helo, timeout=self.timeout, **options)
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:  # connect() says EHLO only for TLS or AUTH
                try:
                    await client.ehlo()
                except errors.SMTPHeloError:
                    await client.helo()
        except errors.SMTPAuthenticationError as error:
            client.close()
            raise Unavailable(f"{destination} refused the login as {secure.user}: "
                              f"{reply_text(error.code, error.message)}") from None
        except (ssl.SSLError, ssl.CertificateError) as error:
            client.close()
            raise Unavailable(f"TLS with {destination} failed: {_describe(error)}") from None
        except errors.SMTPConnectError as error:
            client.close()
            cause = error.__cause__ or error.__context__
            if isinstance(cause, (ssl.SSLError, ssl.CertificateError)):
                raise Unavailable(f"TLS with {destination} failed: {_describe(cause)}") \
                    from None
            raise Unavailable(f"cannot connect to {destination}: {_describe(error)}") \
                from None
        except errors.SMTPResponseException as error:  # 421/554 greeting, EHLO refused
            client.close()
            raise Unavailable(f"{destination} refused the session: "
                              f"{reply_text(error.code, error.message)}") from None
        except errors.SMTPNotSupported as error:  # no STARTTLS, or no AUTH offered
            client.close()
            what = f"TLS with {destination} failed" if "TLS" in str(error).upper() \
                else f"cannot log in to {destination}"
            raise Unavailable(f"{what}: {_describe(error)} ([delivery] tls = "
                              f"\"{secure.tls}\")") from None
        except (errors.SMTPException, OSError, TimeoutError) as error:
            client.close()
            text = str(error)
            if "STARTTLS" in text or "TLS" in text.split():
                raise Unavailable(f"TLS with {destination} failed: {_describe(error)} "
                                  f"([delivery] tls = \"{secure.tls}\")") from None
            if "AUTH" in text:
                raise Unavailable(f"cannot log in to {destination} as {secure.user}: "
                                  f"{_describe(error)}") from None
            raise Unavailable(f"cannot connect to {destination}: "
                              f"{_describe(error)}") from None
        return Connection(client, self.timeout)

    async def _acquire(self, destination: str) -> tuple[Connection, bool]:
        """A connection and whether it is new (a reused one may be stale)."""
        idle = self._idle.get(destination, [])
        while idle:
            client, since = idle.pop()
            if client.is_connected and time.monotonic() - since < IDLE_SECONDS:
                return client, False
            client.close()
        return await self._connect(destination), True

    def _release(self, destination: str, client: Connection) -> None:
        if client.is_connected:
            self._idle.setdefault(destination, []).append((client, time.monotonic()))

    def prune(self) -> None:
        """Close connections that have sat unused too long (the server will soon)."""
        now = time.monotonic()
        for destination, clients in self._idle.items():
            fresh = []
            for client, since in clients:
                if client.is_connected and now - since < IDLE_SECONDS:
                    fresh.append((client, since))
                else:
                    client.close()
            self._idle[destination] = fresh

    async def close(self) -> None:
        for clients in self._idle.values():
            for client, _since in clients:
                await client.quit()  # the server may be gone: closing anyway
                client.close()
        self._idle.clear()

    async def transact(self, destination: str, sender: str, recipients: list[str],
                       data: bytes) -> Handover:
        """Hand `data` to `destination` for `recipients`; Unavailable when it cannot."""
        connection, fresh = await self._acquire(destination)
        try:
            try:
                replies = await _send(connection, sender, recipients, data)
                if replies.mail[0] == 421 and not fresh:
                    raise Stale("421 to MAIL")  # a server closing an idle connection
            except Stale:
                if fresh:
                    raise
                connection.close()  # the server closed an idle connection: try once anew
                connection, fresh = await self._connect(destination), True
                replies = await _send(connection, sender, recipients, data)
            result = await _outcome(connection, destination, recipients, replies)
        except _NotUtf8 as error:
            result = Handover(failed={r: str(error) for r in recipients})
        except (OSError, TimeoutError) as error:
            connection.close()
            raise Unavailable(f"{destination}: {_describe(error)}") from None
        except BaseException:  # a half-done envelope must not carry the next message
            connection.close()
            raise
        finally:
            self._release(destination, connection)
        return result


class _NotUtf8(Exception):
    """An address needs SMTPUTF8 and the server does not offer it."""


async def _send(connection: Connection, sender: str, recipients: list[str],
                data: bytes) -> Replies:
    """One transaction with the options the message needs (the addresses in
    UTF-8 only under SMTPUTF8)."""
    options = _mail_options(connection, sender, recipients, data)
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    return await connection.transaction(_address(sender, encoding), options,
                                        [_address(r, encoding) for r in recipients], data)


_UNSAFE = re.compile(r'[\s<>"]')  # would end the address on a command line, or start one


def _address(address: str, encoding: str) -> bytes:
    """An envelope address as it goes between < and >; ValueError for one
    that would not be an address there (a space, a line break, a bracket).
    Our addresses are bare and checked when they are stored; this is the
    last guard, per recipient, so a regular expression and not a parser
    (email.utils.parseaddr costs 27 µs an address here)."""
    if _UNSAFE.search(address):
        raise ValueError(f"{address!r} contains characters not permitted in an SMTP mailbox")
    return address.encode(encoding)


def _mail_options(connection: Connection, sender: str, recipients: list[str],
                  data: bytes) -> list[str]:
    options = []
    if not data.isascii() and connection.supports("8bitmime"):
        options.append("BODY=8BITMIME")
    head = data[:data.find(b"\r\n\r\n")]
    if not (sender.isascii() and all(r.isascii() for r in recipients) and head.isascii()):
        if not connection.supports("smtputf8"):  # RFC 6531: no downgrade
            raise _NotUtf8("the destination does not accept internationalised "
                           "(SMTPUTF8) addresses or headers")
        options.append("SMTPUTF8")
    return options


async def _outcome(connection: Connection, destination: str, recipients: list[str],
                   replies: Replies) -> Handover:
    """What the replies mean for each recipient: MAIL refused refuses them all;
    each RCPT sorts its recipient; DATA and the final dot decide for the rest."""
    result = Handover()
    code, message = replies.mail
    text = reply_text(code, message)
    if code // 100 != 2:
        if code == 421:
            connection.close()
            raise Unavailable(f"{destination} said {text}")
        for recipient in recipients:
            if code >= 500:
                result.failed[recipient] = f"the sender was refused: {text}"
            else:
                result.temporary[recipient] = text
        await _reset(connection)
        return result
    accepted = []
    for index, (recipient, reply) in enumerate(zip(recipients, replies.rcpt)):
        code, message = reply
        if code // 100 == 2:
            accepted.append(recipient)
            continue
        text = reply_text(code, message)
        if code == 421:  # the server is closing: the rest wait too
            result.unavailable = f"{destination} said {text}"
            for other in recipients[index:] + accepted:
                result.temporary[other] = text
            connection.close()
            return result
        if code >= 500:
            result.permanent[recipient] = (code, text)
        else:
            result.temporary[recipient] = text
    if not accepted:
        await _reset(connection)
        return result
    code, message = replies.end if replies.data[0] == 354 else replies.data
    if code // 100 == 2:
        result.sent = accepted
        return result
    text = reply_text(code, message)
    for recipient in accepted:
        if code >= 500 and len(accepted) == 1:
            result.permanent[recipient] = (code, text)
        elif code >= 500:  # the message was refused, not these members
            result.failed[recipient] = f"the message was refused: {text}"
        else:
            result.temporary[recipient] = text
    if code == 421:
        result.unavailable = f"{destination} said {text}"
        connection.close()
    else:
        await _reset(connection)
    return result


async def _reset(connection: Connection) -> None:
    """RSET after a refusal so the connection can carry the next transaction."""
    if not connection.is_connected:
        return
    try:
        code, _message = await connection.command(b"RSET")
    except (OSError, TimeoutError):  # a connection that cannot reset is not reused
        connection.close()
        return
    if code // 100 != 2:
        connection.close()


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, TimeoutError) and "time" not in text.lower():
        text = f"timed out ({text})"
    return text[:300]


def write_outbox(folder: Path, data: bytes, sender: str, recipients: list[str]) -> str:
    """Put one message into the outbox Maildir (tmp/ then new/, synced to disk),
    with its envelope written on top so a reader sees who it was for."""
    envelope = [f"Return-Path: <{sender}>".encode("utf-8", "surrogateescape")]
    envelope += [f"X-Listserv-Envelope-To: <{r}>".encode("utf-8", "surrogateescape")
                 for r in recipients]
    box = mailbox.Maildir(folder, factory=None, create=True)
    key = box.add(b"\n".join(envelope) + b"\n" + data.replace(b"\r\n", b"\n"))
    path = folder / "new" / key
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(folder / "new", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return key
