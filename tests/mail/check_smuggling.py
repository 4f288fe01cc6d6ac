"""Check where a plain aiosmtpd server ends DATA in the SMTP smuggling sessions.

Starts the test sink (tests/helpers.py `Sink`, a stock aiosmtpd `SMTP`) on
127.0.0.1 at a free port and plays each session in `smuggling/*.txt` over a
raw socket: the commands up to DATA one at a time, then everything after
(the data with its fake end, the smuggled second transaction, the real end
and QUIT) in one write, the way an attacker pipelines it. Prints the
server's replies and what the sink received: how many messages, from which
envelope senders, and whether bare CR or LF survived into the content.
Reads the transcripts; writes nothing. Exits 1 when any session yields
anything but one message from its first MAIL FROM.

    python tests/mail/check_smuggling.py
"""

from __future__ import annotations

import re
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from helpers import Sink  # noqa: E402

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def read_reply(sock: socket.socket) -> list[bytes]:
    """One SMTP reply, all its lines ('250-...' continues, '250 ...' ends)."""
    reply, buffer = [], b""
    while True:
        while b"\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return reply + ([buffer] if buffer else [])
            buffer += chunk
        line, buffer = buffer.split(b"\r\n", 1)
        reply.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return reply


def read_rest(sock: socket.socket, timeout: float = 5) -> list[bytes]:
    """Every reply line until the server closes the connection (after QUIT)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return [line for line in data.split(b"\r\n") if line]


def play(port: int, session: bytes) -> list[bytes]:
    """Send the session: commands singly up to DATA, then the rest at once."""
    head, _, rest = session.partition(b"\r\nDATA\r\n")
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        replies += read_reply(sock)  # greeting
        for command in (head + b"\r\nDATA").split(b"\r\n"):
            sock.sendall(command + b"\r\n")
            replies += read_reply(sock)
        sock.sendall(rest)
        replies += read_rest(sock)
    return replies


def main() -> int:
    sink = Sink().start()
    failures = 0
    try:
        for path in sorted((HERE / "smuggling").glob("*.txt")):
            session = path.read_bytes()
            first_sender = re.search(rb"MAIL FROM:<([^>]*)>", session).group(1).decode()
            before = len(sink.caught)
            replies = play(sink.port, session)
            time.sleep(0.2)
            got = sink.caught[before:]
            senders = [c.mail_from for c in got]
            ok = len(got) == 1 and senders == [first_sender]
            failures += not ok
            codes = " ".join(r[:3].decode(errors="replace") for r in replies)
            print(f"{path.name}: {'OK' if ok else 'SMUGGLED'}: {len(got)} message(s) "
                  f"from {senders}; replies {codes}")
            for caught in got:
                bare = [m.group() for m in BARE.finditer(caught.data)]
                inner = b"MAIL FROM:<mallory@example.net>" in caught.data
                print(f"    content {len(caught.data)} bytes; bare CR/LF kept: "
                      f"{[b.decode() for b in bare] or 'none'}; "
                      f"smuggled commands are body text: {inner}")
    finally:
        sink.stop()
    print("all sessions gave one message from the first sender" if not failures else
          f"{failures} session(s) let a second message through")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
