"""The benchmark's moving parts: processes, sites, senders and the ceiling.

`Children` starts the sink and `listserv serve` as subprocesses and makes
sure they die with the driver (SIGTERM on every exit, PR_SET_PDEATHSIG on
Linux for a driver that is killed outright). `make_site` builds a real
site with the real command line (init, forum create, member import of a
CSV) pointed at the sink. `Server` runs `listserv serve` and reads its peak
RSS from /proc. `hand_over` is the ceiling: the same copies, recipients
per transaction and concurrency as the delivery engine, with the server's
own SMTP client (`smtpout.Pool`, pipelining where the sink offers it),
straight to the sink. `submit_many` is the
pool of concurrent SMTP clients used for intake.
Writes only in the temporary folder it is given.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib

DOMAIN = "lists.example.org"
POSTER = "poster@example.com"
PR_SET_PDEATHSIG = 1
VOCABULARY = ("people take part by plain email wherever they are and whatever their "
              "connection the forum carries words to every ally water wells seeds farmers "
              "network region centre report initiative meeting harvest school village "
              "river market cooperative training radio translation bulletin").split()


def run_async(coro):
    """Run a coroutine on uvloop when it is installed (as `listserv serve` does)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- child processes -------------------------------------------------------------------
def die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the atexit and signal handlers remain
        pass


class Children:
    """Every subprocess the driver starts; all are stopped on any exit."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        atexit.register(self.stop_all)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, _frame):
        raise SystemExit(128 + signum)  # unwinds: finally blocks and atexit run

    def start(self, args, **options) -> subprocess.Popen:
        proc = subprocess.Popen(args, preexec_fn=die_with_parent, **options)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 30) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, grace=5)


@dataclass
class SinkStats:
    messages: int
    recipients: int
    last: float  # time.monotonic() of the last delivery
    cpu: float  # the sink process's CPU seconds


class Sink:
    """bench/sink.py in its own process, and a control connection to it."""

    def __init__(self, children: Children):
        self.proc = children.start([sys.executable, str(Path(__file__).with_name("sink.py"))],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.port = int(self.proc.stdout.readline())
        self.control = socket.create_connection(("127.0.0.1", self.port))
        self.reader = self.control.makefile("rb")
        self.reader.readline()  # greeting

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> SinkStats:
        self.control.sendall(b"XSTAT\r\n")
        _code, messages, recipients, last, cpu = self.reader.readline().split()
        return SinkStats(int(messages), int(recipients), float(last), float(cpu))

    def wait_for(self, base: SinkStats, recipients: int, stall: float = 60,
                 poll: float = 0.02, site: Path | None = None) -> tuple[SinkStats, bool]:
        """Wait until `recipients` more than `base` have arrived; gives up after
        `stall` seconds without progress. Returns (stats, complete). (`site` is
        for sinks that count nothing, `postfix_sink.PostfixSink`: this one counts.)"""
        seen, since = -1, time.monotonic()
        while True:
            now = self.stats()
            if now.recipients - base.recipients >= recipients:
                return now, True
            if now.recipients != seen:
                seen, since = now.recipients, time.monotonic()
            elif time.monotonic() - since > stall:
                return now, False
            time.sleep(poll)


# -- sites -----------------------------------------------------------------------------
def listserv(*args, site: Path | None = None) -> str:
    command = [sys.executable, "-m", "listserv"] + (["--site", str(site)] if site else [])
    done = subprocess.run(command + [str(a) for a in args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"listserv {' '.join(map(str, args))} failed: {done.stderr.strip()}")
    return done.stdout


def member_addresses(count: int, domains: int) -> list[str]:
    """`count` addresses spread evenly (round robin) over `domains` domains."""
    return [f"ally{i:06d}@org{i % domains:02d}.example.net" for i in range(count)]


def make_site(folder: Path, smarthost: str, forums: dict[str, list[str]],
              concurrency: int | None = None, batch_size: int | None = None,
              archive: str = "public", config: dict | None = None) -> Path:
    """A site whose [delivery] smarthost is the sink, with open forums and members.
    `config` sets more keys: {section: {key: TOML value text}} (`listserv init`
    turns DKIM on: {"dkim": {"selector": '""'}} turns it off)."""
    listserv("init", folder, "--domain", DOMAIN)
    path = folder / "listserv.toml"
    text = path.read_text()
    changes = {"smarthost": f'"{smarthost}"', "concurrency": concurrency,
               "batch_size": batch_size}
    for key, value in changes.items():
        if value is not None:
            text = set_key(text, "delivery", key, value)
    for section, keys in (config or {}).items():
        for key, value in keys.items():
            text = set_key(text, section, key, value)
    path.write_text(text)
    for slug, addresses in forums.items():
        listserv("forum", "create", slug, "--title", f"Bench {slug}", "--path", "thematic",
                 "--policy", "open", "--no-charter", "--digest", "never", "--archive", archive,
                 site=folder)
        table = folder / f"{slug}.csv"
        table.write_text("address\n" + "\n".join(addresses) + "\n")
        listserv("member", "import", slug, table, site=folder)
        table.unlink()
    return folder


def set_key(text: str, section: str, key: str, value) -> str:
    """`text` (a listserv.toml) with `key = value` in [section], which has the key."""
    head, sep, rest = text.partition(f"\n[{section}]\n")
    assert sep, f"no [{section}] in listserv.toml"
    body, next_sep, tail = rest.partition("\n[")
    body, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", body, count=1)
    assert found, f"no {key} line in [{section}] of listserv.toml"
    return head + sep + body + next_sep + tail


@dataclass(frozen=True)
class Delivery:
    concurrency: int
    batch_size: int


def delivery_settings(folder: Path) -> Delivery:
    """The site's [delivery] concurrency and batch_size (`listserv init` writes
    every key; the server itself checked them when it started)."""
    section = tomllib.loads((folder / "listserv.toml").read_text())["delivery"]
    return Delivery(int(section["concurrency"]), int(section["batch_size"]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS (kB) of a live process."""
    found = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0])
    return found


def proc_cpu(pid: int, task: int | None = None) -> float:
    """User + system CPU seconds of a live process (all its threads), or of
    one of its threads."""
    return sum(proc_cpu_split(pid, task))


def proc_cpu_split(pid: int, task: int | None = None) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process or of one of its threads."""
    path = f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat"
    with open(path) as handle:
        fields = handle.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds of those of `pids` that are still alive."""
    total = 0.0
    for pid in pids:
        try:
            total += proc_cpu(pid)
        except OSError:
            pass
    return total


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq,
    softirq, steal): beside our own processes' CPU, it shows what else ran."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    return (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")


class Server:
    """`listserv serve` on a free loopback port, its log in the site folder."""

    def __init__(self, children: Children, site: Path, profile: Path | None = None):
        self.children, self.site = children, site
        self.port = free_port()
        self.log_path = site / "serve.log"
        self.log = open(self.log_path, "wb")
        self.proc = children.start(
            [sys.executable, "-m", "listserv", "--site", str(site), "serve",
             "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()
        self.profiler = None
        if profile is not None:  # py-spy samples the thread holding the GIL (Python CPU);
            # it writes its file and stops when serve does
            profile.parent.mkdir(parents=True, exist_ok=True)
            self.profiler = children.start(
                ["py-spy", "record", "--pid", str(self.proc.pid), "--rate", "250", "--gil",
                 "--threads", "--format", "raw", "--output", str(profile)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)  # py-spy attaches

    def _wait_ready(self, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"listserv serve exited: {self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    if probe.recv(100).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"listserv serve did not answer within {limit}s: {self.tail()}")

    def tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def processes(self) -> list[int]:
        """serve and its children (the handover process), by pid."""
        found = [self.proc.pid]
        for pid in found:
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as handle:
                        found.extend(int(child) for child in handle.read().split())
            except OSError:
                pass  # gone meanwhile
        return found

    def memory(self) -> dict[str, int]:
        """VmHWM and VmRSS added up over serve and its children: their peaks may
        not coincide, so the sum errs on the high side."""
        total = {"VmHWM": 0, "VmRSS": 0}
        for pid in self.processes():
            try:
                for key, value in proc_status(pid).items():
                    total[key] += value
            except OSError:
                pass
        return total

    def cpu(self) -> float:
        """CPU seconds of serve and its live children."""
        return _cpu_of(self.processes())

    def children_cpu(self) -> float:
        """CPU seconds of serve's live children (the handover process)."""
        return _cpu_of(self.processes()[1:])

    def threads_cpu(self) -> dict[str, tuple[float, float]]:
        """(user, system) CPU seconds per thread of serve, by thread name (the
        store's threads name themselves; unnamed ones are added up under
        their common name; the event loop's thread is "main")."""
        found: dict[str, tuple[float, float]] = {}
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{task}/comm") as handle:
                    name = handle.read().strip()
                user, system = proc_cpu_split(self.proc.pid, int(task))
            except OSError:
                continue  # ended meanwhile
            if int(task) == self.proc.pid:
                name = "main"
            before = found.get(name, (0.0, 0.0))
            found[name] = (before[0] + user, before[1] + system)
        return found

    def main_thread_cpu(self) -> float:
        """serve's event loop thread (intake, the delivery engine's bookkeeping); the
        rest is the store's writer thread and the handover process."""
        return proc_cpu(self.proc.pid, self.proc.pid)

    def stop(self) -> None:
        self.children.stop(self.proc)
        if self.profiler is not None:  # it writes its file when it sees serve gone
            try:
                self.profiler.wait(20)
            except subprocess.TimeoutExpired:
                self.profiler.send_signal(signal.SIGINT)
            self.children.stop(self.profiler)
        self.log.close()


# -- mail ------------------------------------------------------------------------------
def poster(number: int, senders: int) -> str:
    return f"poster{number % senders:03d}@example.com"


def make_post(number: int, size: int = 4096, to: str = f"bench@{DOMAIN}",
              sender: str = POSTER) -> bytes:
    """A plain-text post of about `size` bytes, its text and Message-ID its own
    (the same text again from the same sender looks like a mail loop)."""
    head = (f"From: Poster <{sender}>\r\nTo: {to}\r\n"
            f"Subject: Bench post {number}\r\nMessage-ID: <bench-{number}-{os.getpid()}"
            f"-{time.time_ns()}@example.com>\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
    words = random.Random(number).choices(VOCABULARY, k=size // 5)
    lines, line, length = [f"Post {number}."], "", len(head)
    for word in words:
        if len(line) + len(word) >= 72:
            lines.append(line)
            length += len(line) + 2
            line = ""
            if length >= size:
                break
        line = f"{line} {word}".strip()
    return (head + "\r\n".join(lines) + "\r\n").encode()


def copies_and_recipients(site: Path, batch_size: int, ref_prefix: str = "post:"):
    """What the server handed over, as ceiling jobs: (sender, recipients, data)
    per transaction, grouped per body and domain in chunks of `batch_size`,
    in the queue's order."""
    conn = sqlite3.connect(str(site / "data" / "listserv.db"))
    try:
        bodies = dict(conn.execute("SELECT id, raw FROM bodies WHERE ref LIKE ?",
                                   [ref_prefix + "%"]))
        jobs, current, key = [], [], None
        for body_id, sender, domain, recipient in conn.execute(
                "SELECT body_id, sender, domain, recipient FROM delivery_recipients "
                "ORDER BY next_at, domain, body_id, id"):
            if body_id not in bodies:
                continue
            if (body_id, sender, domain) != key or len(current) >= batch_size:
                if current:
                    jobs.append((key[1], current, bodies[key[0]]))
                key, current = (body_id, sender, domain), []
            current.append(recipient)
        if current:
            jobs.append((key[1], current, bodies[key[0]]))
    finally:
        conn.close()
    return jobs


async def hand_over(port: int, jobs, concurrency: int, helo: str = DOMAIN,
                    sign=None) -> float:
    """The ceiling: `concurrency` workers take jobs (sender, recipients, data)
    from one queue and hand each over with the server's own SMTP client
    (`smtpout.Pool`: kept-open connections, MAIL, RCPT per recipient, DATA,
    pipelined when the sink offers PIPELINING, as the server's are), with no
    list server around it; `sign(data)`, when given, makes the bytes that go
    out (DKIM, on the clock, in the same loop). Raises if any recipient was
    not taken. Returns when it started (time.monotonic()), connections included."""
    from listserv.delivery.smtpout import Pool

    queue = deque(jobs)
    pool = Pool(helo, 60.0)
    destination = f"127.0.0.1:{port}"
    start = time.monotonic()

    async def worker():
        while queue:
            sender, recipients, data = queue.popleft()
            if sign is not None:
                data = sign(data)
            result = await pool.transact(destination, sender, recipients, data)
            if len(result.sent) != len(recipients):
                raise RuntimeError(f"the sink did not take every recipient: {result}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await pool.close()
    return start


async def submit_many(port: int, messages: list[tuple[str, bytes]], clients: int,
                      recipient: str) -> float:
    """`clients` concurrent SMTP clients (one kept-open connection each) send
    `messages` (sender, data) between them; returns the seconds until the last 250."""
    queue = deque(messages)
    start = time.monotonic()

    async def client_task():
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120,
                                 start_tls=None, validate_certs=False)
        await client.connect()
        while queue:
            sender, data = queue.popleft()
            await client.sendmail(sender, [recipient], data)
        await client.quit()

    await asyncio.gather(*(client_task() for _ in range(clients)))
    return time.monotonic() - start
