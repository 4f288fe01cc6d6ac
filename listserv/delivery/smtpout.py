"""Handing mail over: SMTP connections kept open per destination, and the outbox.

`Pool.transact` runs one SMTP transaction (MAIL, one RCPT per recipient,
DATA) on a connection it keeps open for the next one to the same
destination, and sorts every recipient into what the server said: sent,
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
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
from aiosmtplib import errors

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
        self._idle: dict[str, list[tuple[aiosmtplib.SMTP, float]]] = {}

    async def _connect(self, destination: str) -> aiosmtplib.SMTP:
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
        return client

    async def _acquire(self, destination: str) -> tuple[aiosmtplib.SMTP, bool]:
        """A connected client and whether it is new (a reused one may be stale)."""
        idle = self._idle.get(destination, [])
        while idle:
            client, since = idle.pop()
            if client.is_connected and time.monotonic() - since < IDLE_SECONDS:
                return client, False
            client.close()
        return await self._connect(destination), True

    def _release(self, destination: str, client: aiosmtplib.SMTP) -> None:
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
                try:
                    await client.quit(timeout=2)
                except Exception:  # closing anyway; the server may be gone
                    pass
                client.close()
        self._idle.clear()

    async def transact(self, destination: str, sender: str, recipients: list[str],
                       data: bytes) -> Handover:
        """Hand `data` to `destination` for `recipients`; Unavailable when it cannot."""
        client, fresh = await self._acquire(destination)
        try:
            try:
                encoding = await _mail(client, sender, recipients, data)
            except (errors.SMTPServerDisconnected, ConnectionError,
                    errors.SMTPSenderRefused) as error:
                if fresh or getattr(error, "code", 421) != 421:
                    raise
                client.close()  # the server closed an idle connection: try once anew
                client, fresh = await self._connect(destination), True
                encoding = await _mail(client, sender, recipients, data)
            result = await _after_mail(client, destination, recipients, data, encoding)
        except _NotUtf8 as error:
            result = Handover(failed={r: str(error) for r in recipients})
        except errors.SMTPSenderRefused as error:
            text = reply_text(error.code, error.message)
            if error.code == 421 or not client.is_connected:
                raise Unavailable(f"{destination} said {text}") from None
            result = Handover()
            for recipient in recipients:
                if error.code >= 500:
                    result.failed[recipient] = f"the sender was refused: {text}"
                else:
                    result.temporary[recipient] = text
            await _reset(client)
        except errors.SMTPResponseException as error:  # EHLO/HELO refused on first use
            client.close()
            raise Unavailable(f"{destination} said {reply_text(error.code, error.message)}") \
                from None
        except (errors.SMTPException, OSError, TimeoutError) as error:
            client.close()
            raise Unavailable(f"{destination}: {_describe(error)}") from None
        except BaseException:  # a half-done envelope must not carry the next message
            client.close()
            raise
        finally:
            self._release(destination, client)
        return result


class _NotUtf8(Exception):
    """An address needs SMTPUTF8 and the server does not offer it."""


async def _mail(client: aiosmtplib.SMTP, sender: str, recipients: list[str],
                data: bytes) -> str:
    """MAIL FROM with the options the message needs; returns the address encoding."""
    options = _mail_options(client, sender, recipients, data)
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    await client.mail(sender, options=options, encoding=encoding)
    return encoding


def _mail_options(client: aiosmtplib.SMTP, sender: str, recipients: list[str],
                  data: bytes) -> list[str]:
    options = []
    if not data.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    head = data[:data.find(b"\r\n\r\n")]
    if not (sender.isascii() and all(r.isascii() for r in recipients) and head.isascii()):
        if not client.supports_extension("smtputf8"):  # RFC 6531: no downgrade
            raise _NotUtf8("the destination does not accept internationalised "
                           "(SMTPUTF8) addresses or headers")
        options.append("SMTPUTF8")
    return options


async def _after_mail(client: aiosmtplib.SMTP, destination: str, recipients: list[str],
                      data: bytes, encoding: str) -> Handover:
    """RCPT for each recipient, then DATA for those the server took."""
    result = Handover()
    accepted = []
    for index, recipient in enumerate(recipients):
        try:
            await client.rcpt(recipient, encoding=encoding)
        except errors.SMTPRecipientRefused as error:
            text = reply_text(error.code, error.message)
            if error.code == 421:  # the server is closing: the rest wait too
                result.unavailable = f"{destination} said {text}"
                for other in recipients[index:]:
                    result.temporary[other] = text
                for other in accepted:
                    result.temporary[other] = text
                return result
            if error.code >= 500:
                result.permanent[recipient] = (error.code, text)
            else:
                result.temporary[recipient] = text
        else:
            accepted.append(recipient)
    if not accepted:
        await _reset(client)
        return result
    try:
        await client.data(data)
    except errors.SMTPDataError as error:
        text = reply_text(error.code, error.message)
        for recipient in accepted:
            if error.code >= 500 and len(accepted) == 1:
                result.permanent[recipient] = (error.code, text)
            elif error.code >= 500:  # the message was refused, not these members
                result.failed[recipient] = f"the message was refused: {text}"
            else:
                result.temporary[recipient] = text
        if error.code == 421:
            result.unavailable = f"{destination} said {text}"
            client.close()
        else:
            await _reset(client)
        return result
    result.sent = accepted
    return result


async def _reset(client: aiosmtplib.SMTP) -> None:
    """RSET after a refusal so the connection can carry the next transaction."""
    if not client.is_connected:
        return
    try:
        await client.rset()
    except Exception:  # a connection that cannot reset is not reused
        client.close()


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
