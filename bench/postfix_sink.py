"""Postfix's C test tools as the benchmark's sink and ceiling (`run.py --sink postfix`).

`PostfixSink` runs `/usr/sbin/smtp-sink` (Debian's `postfix` package) on a
free loopback port, in place of `sink.py`. smtp-sink keeps no recipient
count the driver can ask for, so deliveries are counted from the site's
own store (recipients of post copies whose rows are `sent`); its `-c`
counter line (messages, written as each "." arrives) gives the time of the
last delivery, as `sink.py`'s XSTAT does. `smtp_source` is the ceiling
client: `/usr/sbin/smtp-source` sends one of the server's stored copies
(`-F`) as many times as the server ran transactions, with the same
recipients per transaction (`-r`) over the same number of kept-open
connections (`-s`, `-d`); `raw_rate` is smtp-source alone with its own
small message, the machine's physical limit. smtp-source does not pipeline
(its man page says so), so it is a conservative limit.
Writes a copy's text to a temporary file; starts processes that die with
the driver.
"""

from __future__ import annotations

import collections
import os
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from harness import DOMAIN, Children, SinkStats, free_port, proc_cpu

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SENT = ("SELECT coalesce(sum(size), 0) FROM deliveries "
        "WHERE status = 'sent' AND ref LIKE 'post:%'")


def missing() -> str:
    """Why `--sink postfix` cannot run here, or ''."""
    absent = [path for path in (SMTP_SINK, SMTP_SOURCE) if not os.access(path, os.X_OK)]
    return (f"{', '.join(absent)} not found: install Debian's 'postfix' package "
            f"(apt-get install postfix)") if absent else ""


class PostfixSink:
    """smtp-sink on a free loopback port; its message counter read as it runs."""

    def __init__(self, children: Children):
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses root otherwise
        self.proc = children.start([SMTP_SINK, *user, "-c", f"127.0.0.1:{self.port}", "512"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.messages, self.last = 0, 0.0
        threading.Thread(target=self._read_counter, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smtp-sink did not start: "
                                   f"{self.proc.stderr.read().decode(errors='replace')}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                return probe.recv(100).startswith(b"220")
        except OSError:
            return False

    def _read_counter(self) -> None:
        """`-c` writes '\\rsess=N quit=N mesg=N' as each message and session ends."""
        pending = b""
        while True:
            data = os.read(self.proc.stdout.fileno(), 65536)
            if not data:
                return
            now = time.monotonic()
            pending += data
            *lines, pending = pending.split(b"\r")
            for line in reversed(lines):
                if b"mesg=" in line:
                    count = int(line.rpartition(b"mesg=")[2].split()[0])
                    if count != self.messages:
                        self.messages, self.last = count, now
                    break

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> SinkStats:
        """Messages and last delivery from the counter; recipients are not
        counted here (see `wait_for`)."""
        return SinkStats(self.messages, 0, self.last, proc_cpu(self.proc.pid))

    def wait_for(self, base: SinkStats, recipients: int, stall: float = 60,
                 poll: float = 0.05, site: Path | None = None) -> tuple[SinkStats, bool]:
        """Wait until `site`'s store has `recipients` post copies `sent`; gives up
        after `stall` seconds without progress. Returns (stats, complete)."""
        conn = sqlite3.connect(f"file:{site / 'data' / 'listserv.db'}?mode=ro", uri=True,
                               timeout=30)
        seen, since = -1, time.monotonic()
        try:
            while True:
                sent = conn.execute(SENT).fetchone()[0]
                if sent >= recipients or (sent == seen and time.monotonic() - since > stall):
                    time.sleep(0.05)  # the counter line of the last "." is read
                    now = self.stats()
                    return SinkStats(now.messages, sent, now.last, now.cpu), sent >= recipients
                if sent != seen:
                    seen, since = sent, time.monotonic()
                time.sleep(poll)
        finally:
            conn.close()


def smtp_source(sink: PostfixSink, jobs: list, concurrency: int) -> dict:
    """The ceiling: smtp-source hands the first job's copy over as many times as
    there are jobs, with their recipients per transaction, over `concurrency`
    kept-open connections. Seconds from its start to the last "." at the sink."""
    sizes = collections.Counter(len(recipients) for _sender, recipients, _data in jobs)
    per_transaction = sizes.most_common(1)[0][0]
    sender, recipients, data = jobs[0]
    with tempfile.NamedTemporaryFile("wb", suffix=".eml") as copy:
        copy.write(data.replace(b"\r\n", b"\n"))  # it appends CRLF to each line itself
        copy.flush()
        result = _run(sink, ["-F", copy.name, "-f", sender, "-t", recipients[0]],
                      len(jobs), per_transaction, concurrency)
    result["recipients_per_transaction"] = dict(sizes)
    return result


def raw_rate(sink: PostfixSink, messages: int = 2000, recipients: int = 100,
             sessions: int = 8) -> dict:
    """smtp-source alone, its own small message: the machine's physical limit."""
    return _run(sink, ["-f", f"bench-bounces@{DOMAIN}", "-t", "ally@org00.example.net"],
                messages, recipients, sessions)


def _run(sink: PostfixSink, options: list, messages: int, recipients: int,
         sessions: int) -> dict:
    base = sink.stats()
    command = [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(messages), "-r",
               str(recipients), "-M", DOMAIN, *options, sink.address]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"smtp-source failed: {done.stderr.strip()[-300:]}")
    deadline = time.monotonic() + 10
    while sink.messages - base.messages < messages and time.monotonic() < deadline:
        time.sleep(0.01)
    seconds = sink.last - start
    shown = ["COPY.eml" if word.endswith(".eml") else word for word in command[:-1]]
    return {"command": " ".join(shown + ["HOST:PORT"]), "messages": messages,
            "recipients": messages * recipients, "sessions": sessions,
            "received": sink.messages - base.messages, "seconds": round(seconds, 3),
            "per_second": round(messages * recipients / seconds, 1),
            "sink_cpu_percent": round(100 * (sink.stats().cpu - base.cpu) / seconds, 1)}
