"""Limits of the SMTP/LMTP edge: connections, per address, and time.

An edge that faces the Internet must not be held up by clients that open
connections and say nothing, or say one byte every few seconds.
`Gate` counts open connections in all and per client IP address
(`[smtp] max_connections`, `max_per_ip`); a connection over either limit
gets `421 4.7.0` and is closed at once, before any handler work.
`limited(SMTP)` makes an aiosmtpd protocol class that enforces them, and two
clocks: `command_timeout` is the time a client has to finish each command
line from the end of the last one (partial bytes do not reset it, so a
byte every 10 seconds does not keep a connection), and
`transaction_timeout` bounds a whole transaction from MAIL FROM to the end
of DATA. Either ends the session with `421 4.4.2`. Reads and writes nothing
on disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Gate:
    """Open connections, in all and per client IP address."""

    max_connections: int
    max_per_ip: int
    open: int = 0
    per_ip: Counter = field(default_factory=Counter)
    refused: int = 0

    def admit(self, ip: str) -> str:
        """'' and counted, or the reason this connection is refused."""
        if self.open >= self.max_connections:
            self.refused += 1
            return "too many connections to this server"
        if self.per_ip[ip] >= self.max_per_ip:
            self.refused += 1
            return f"too many connections from {ip}"
        self.open += 1
        self.per_ip[ip] += 1
        return ""

    def release(self, ip: str) -> None:
        self.open -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]


def limited(protocol_cls):
    """A subclass of an aiosmtpd SMTP/LMTP class that keeps the limits of a
    `Gate` and the two timeouts (in seconds)."""

    class Limited(protocol_cls):
        def __init__(self, handler, *, gate: Gate, command_timeout: float,
                     transaction_timeout: float, **kwargs):
            super().__init__(handler, timeout=command_timeout, **kwargs)
            self._gate = gate
            self._transaction_timeout = transaction_timeout
            self._gate_ip: str | None = None  # set once admitted
            self._refused = False
            self._transaction_handle: asyncio.TimerHandle | None = None

        def connection_made(self, transport):
            if self._gate_ip is None and not self._refused:  # not again after STARTTLS
                peer = transport.get_extra_info("peername") or ("?", 0)
                ip = str(peer[0])
                reason = self._gate.admit(ip)
                if reason:
                    self._refused = True
                    log.warning("refused a connection from %s: %s", ip, reason)
                    transport.write(f"421 4.7.0 {self.hostname} {reason}; please try "
                                    f"again later\r\n".encode("ascii"))
                    transport.close()
                    return
                self._gate_ip = ip
            super().connection_made(transport)

        def connection_lost(self, error):
            if self._refused and self._gate_ip is None:
                return  # never started: nothing of aiosmtpd's to clean up
            self._cancel_transaction_clock()
            if self._gate_ip is not None:
                self._gate.release(self._gate_ip)
                self._gate_ip = None
            super().connection_lost(error)

        def eof_received(self):
            if not (self._refused and self._gate_ip is None):
                super().eof_received()
            return False  # the client is gone: close now and free its place

        def data_received(self, data):
            if self._refused and self._gate_ip is None:
                return
            super().data_received(data)

        def _timeout_cb(self):
            self._say_goodbye("421 4.4.2 {host} no complete command in time; closing")
            super()._timeout_cb()

        def _say_goodbye(self, line: str) -> None:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                log.info("%r: %s", self.session.peer if self.session else "?",
                         line.format(host=self.hostname))
                try:
                    transport.write((line.format(host=self.hostname) + "\r\n").encode())
                except Exception:  # the connection is going anyway
                    pass

        def _transaction_expired(self):
            self._transaction_handle = None
            self._say_goodbye("421 4.4.2 {host} the transaction took too long; closing")
            if self.transport is not None:
                self.transport.close()

        def _cancel_transaction_clock(self):
            if self._transaction_handle is not None:
                self._transaction_handle.cancel()
                self._transaction_handle = None

        def _set_post_data_state(self):  # after DATA, RSET, or a new session
            self._cancel_transaction_clock()
            super()._set_post_data_state()

        async def smtp_MAIL(self, arg):
            await super().smtp_MAIL(arg)
            if self.envelope is not None and self.envelope.mail_from is not None \
                    and self._transaction_handle is None:
                self._transaction_handle = self.loop.call_later(
                    self._transaction_timeout, self._transaction_expired)

        async def smtp_DATA(self, arg):
            if self._transaction_handle is not None:  # the data phase has the
                self._reset_timeout(self._transaction_timeout)  # transaction's clock
            await super().smtp_DATA(arg)

    Limited.__name__ = f"Limited{protocol_cls.__name__}"
    return Limited
