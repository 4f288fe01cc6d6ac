"""A lean SMTP sink for the benchmark: takes every message, counts, keeps nothing.

A stock aiosmtpd handler spends a few hundred microseconds of CPU on each
recipient, which would make the sink, not the client, the limit of any
ceiling. This sink is an asyncio Protocol (on uvloop when installed) that
speaks just enough ESMTP: EHLO/HELO (advertising PIPELINING, 8BITMIME,
SIZE, SMTPUTF8), MAIL, RCPT, DATA, RSET, NOOP, QUIT. It answers pipelined
commands in one write, counts RCPT lines without reading the addresses, and
finds the end of DATA without keeping or parsing the body.

The bench driver reads the counters with one extra command on any
connection: `XSTAT` answers
`250 <messages> <recipients> <last delivery, time.monotonic()> <sink CPU s>`
(CLOCK_MONOTONIC is the same for every process on the machine, so the
driver can compare it with its own clock).

Run: `python bench/sink.py [--host 127.0.0.1] [--port 0]`; it prints the port
it got on the first line of stdout, and exits on SIGTERM, SIGINT or when its
stdin closes (the driver holds the other end, so the sink never outlives it).
Writes nothing to disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

GREETING = b"220 sink ESMTP ready\r\n"
EHLO_REPLY = (b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
              b"250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n")
OK = b"250 2.0.0 OK\r\n"
RCPT_OK = b"250 2.1.5 OK\r\n"
GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>\r\n"
QUEUED = b"250 2.0.0 Queued\r\n"
BYE = b"221 2.0.0 Bye\r\n"
UNKNOWN = b"500 5.5.2 Command not recognised\r\n"
END = b"\r\n.\r\n"


class Counts:
    """Totals over all connections (one process, one thread: no lock needed)."""

    messages = 0
    recipients = 0
    last = 0.0


class SinkProtocol(asyncio.Protocol):
    """One SMTP session. Command lines are dispatched on their first four bytes."""

    def __init__(self):
        self.transport = None
        self.pending = b""  # an incomplete command line
        self.in_data = False
        self.tail = b""  # the last bytes of DATA seen, to find END across reads
        self.rcpts = 0

    def connection_made(self, transport):
        self.transport = transport
        transport.write(GREETING)

    def data_received(self, data: bytes) -> None:
        out: list[bytes] = []
        while data:
            if self.in_data:
                data = self._data(data, out)
            else:
                data = self._commands(data, out)
                if data is None:
                    break
        if out:
            self.transport.write(b"".join(out))

    def _data(self, data: bytes, out: list) -> bytes:
        """Skip message content; returns what follows the end of DATA, if any."""
        chunk = self.tail + data
        end = chunk.find(END)
        if end < 0:
            self.tail = chunk[-4:]
            return b""
        self.in_data = False
        Counts.messages += 1
        Counts.recipients += self.rcpts
        Counts.last = time.monotonic()
        self.rcpts = 0
        out.append(QUEUED)
        return chunk[end + 5:]

    def _commands(self, data: bytes, out: list) -> bytes | None:
        """Answer every whole command line; returns the bytes after DATA, or
        None when all of `data` was used (or the session ended)."""
        if self.pending:
            data, self.pending = self.pending + data, b""
        start = 0
        while True:
            end = data.find(b"\r\n", start)
            if end < 0:
                self.pending = data[start:]
                return None
            verb = data[start:start + 4].upper()
            start = end + 2
            if verb == b"RCPT":
                self.rcpts += 1
                out.append(RCPT_OK)
            elif verb == b"MAIL":
                self.rcpts = 0
                out.append(OK)
            elif verb == b"DATA":
                out.append(GO_AHEAD)
                self.in_data, self.tail = True, b"\r\n"  # the CRLF ending "DATA"
                return data[start:] or None
            elif verb in (b"EHLO", b"HELO"):
                out.append(EHLO_REPLY if verb == b"EHLO" else OK)
            elif verb in (b"RSET", b"NOOP"):
                self.rcpts = 0 if verb == b"RSET" else self.rcpts
                out.append(OK)
            elif verb == b"XSTA":
                out.append(f"250 {Counts.messages} {Counts.recipients} {Counts.last!r} "
                           f"{time.process_time()!r}\r\n".encode())
            elif verb == b"QUIT":
                out.append(BYE)
                self.transport.write(b"".join(out))
                out.clear()
                self.transport.close()
                return None
            else:
                out.append(UNKNOWN)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def stdin_closed() -> None:
        if not os.read(0, 4096):
            loop.remove_reader(0)
            stop.set()

    if not sys.stdin.isatty():
        loop.add_reader(0, stdin_closed)
    server = await loop.create_server(SinkProtocol, host, port, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
