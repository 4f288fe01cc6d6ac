"""Real parts for tests: an aiosmtpd sink on a loopback port, SMTP sending,
and a `listserv serve` subprocess with its port.

Servers bind 127.0.0.1 port 0 and report the port they got (aiosmtpd's
Controller cannot), so tests run in parallel without port clashes.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.smtp import SMTP


@dataclass
class Caught:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self):
        return email.message_from_bytes(self.data, policy=email.policy.default)


class SinkHandler:
    """Catches every transaction; `answer(rcpt)` may return a reply to refuse one."""

    def __init__(self):
        self.caught: list[Caught] = []
        self.lock = threading.Lock()
        self.answer: Callable[[str], str | None] = lambda rcpt: None
        self.data_answer: Callable[[list[str]], str | None] = lambda rcpts: None
        self.delay = 0.0  # seconds each DATA takes, to slow a fan-out down

    async def handle_RCPT(self, server, session, envelope, address, options):
        reply = self.answer(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = self.data_answer(list(envelope.rcpt_tos))
        if reply:
            return reply
        with self.lock:
            self.caught.append(Caught(envelope.mail_from, list(envelope.rcpt_tos),
                                      bytes(envelope.original_content or envelope.content)))
        return "250 OK"


class Sink:
    """An SMTP server on 127.0.0.1:<free port>, on its own thread and loop."""

    def __init__(self):
        self.handler = SinkHandler()
        self.loop = asyncio.new_event_loop()
        self.server = None
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> Sink:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        self.port = future.result(10)
        return self

    async def _start(self) -> int:
        self.server = await self.loop.create_server(
            lambda: SMTP(self.handler, enable_SMTPUTF8=True, data_size_limit=None,
                         hostname="sink.test"), "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def _stop():
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    # -- reading what arrived -------------------------------------------------
    @property
    def caught(self) -> list[Caught]:
        with self.handler.lock:
            return list(self.handler.caught)

    def recipients(self) -> list[str]:
        return [r for c in self.caught for r in c.rcpt_tos]

    def messages_to(self, address: str) -> list:
        address = address.lower()
        return [c.message for c in self.caught if address in (r.lower() for r in c.rcpt_tos)]

    def wait_for(self, predicate: Callable[[Sink], bool], timeout: float = 20,
                 what: str = "mail") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                             f"caught {len(self.caught)} transactions to "
                             f"{sorted(set(self.recipients()))[:20]}")

    def wait_for_recipient(self, address: str, count: int = 1, timeout: float = 20) -> list:
        self.wait_for(lambda s: len(s.messages_to(address)) >= count, timeout,
                      f"{count} message(s) to {address}")
        return self.messages_to(address)


@contextmanager
def running_sink():
    sink = Sink().start()
    try:
        yield sink
    finally:
        sink.stop()


def send_mail(port: int, mail_from: str, rcpt_tos: list[str], data: bytes | str,
              host: str = "127.0.0.1") -> dict:
    """Send with smtplib; returns refused recipients (raises on total refusal)."""
    if isinstance(data, str):
        data = data.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    with smtplib.SMTP(host, port, timeout=30) as client:
        return client.sendmail(mail_from, rcpt_tos, data)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            out = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise AssertionError(f"listserv serve exited with {process.returncode}: {out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on port {port} after {timeout}s")


def listserv(*args: str, site: Path | None = None, input: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `listserv` command line in a subprocess."""
    command = [sys.executable, "-m", "listserv"]
    if site is not None:
        command += ["--site", str(site)]
    result = subprocess.run(command + list(args), capture_output=True, text=True,
                            input=input, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"listserv {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Server:
    """A `listserv serve` subprocess on a free loopback port."""

    site: Path
    port: int = 0
    process: subprocess.Popen | None = None
    extra: list[str] = field(default_factory=list)
    log_path: Path | None = None

    def start(self) -> Server:
        """Its output goes to a file beside the site (a pipe nobody reads until
        the end could fill up and stall a talkative server)."""
        self.port = self.port or free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.log_path = self.site.parent / f"serve-{self.port}-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "listserv", "--site", str(self.site), "serve",
                 "--listen", f"127.0.0.1:{self.port}", *self.extra],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_port(self.port, process=self.process)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.output()}") from None
        return self

    def output(self) -> str:
        """What the server has printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> str:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.output()


@contextmanager
def running_server(site: Path, *extra: str):
    server = Server(site, extra=list(extra)).start()
    try:
        yield server
    finally:
        output = server.stop()
        if "Traceback" in output:
            print(output)


@contextmanager
def running_intake(site):
    """Our real intake server on 127.0.0.1:<free port>, in this process, with the
    site's writer; yields the port. The pipeline is driven by the test."""
    from listserv.intake.smtp import start_intake

    site.start_writer()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(
        start_intake(site, "127.0.0.1", 0, lambda: None), loop).result(10)
    async def close():
        server.close()
        await server.wait_closed()

    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        site.stop_writer()


def make_site(tmp_path, sink, *extra_toml: str, web_url: str = ""):
    """A site made by `listserv init`, delivering to the sink."""
    folder = tmp_path / "site"
    listserv("init", str(folder), "--domain", "lists.example.org")
    config = folder / "listserv.toml"
    text = config.read_text()
    text = text.replace('smarthost = ""', f'smarthost = "127.0.0.1:{sink.port}"')
    text = text.replace('retry_schedule = ["1m", "5m", "15m", "1h", "2h", "4h"]',
                        'retry_schedule = ["1s", "2s"]')
    text = text.replace('retry_handling = "1m"', 'retry_handling = "1s"')
    text = text.replace("secretariat = []", 'secretariat = ["secretariat@example.org"]')
    if web_url:
        text = text.replace('url = ""', f'url = "{web_url}"')
        text = text.replace('listen = "127.0.0.1:8080"', 'listen = "127.0.0.1:0"')
    config.write_text(text + "".join(extra_toml))
    return folder


def write_site(folder: Path, smarthost_port: int | None = None, extra: str = "") -> Path:
    """A minimal site folder; `extra` is appended TOML (whole sections)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "charter").mkdir(exist_ok=True)
    delivery = f'smarthost = "127.0.0.1:{smarthost_port}"\n' if smarthost_port else ""
    (folder / "listserv.toml").write_text(
        f'[site]\ndomain = "lists.example.org"\nname = "Test alliance"\n'
        f'secretariat = ["secretariat@example.org"]\n'
        f'[delivery]\n{delivery}retry_schedule = ["1s", "2s"]\ngive_up_after = "1m"\n'
        f'timeout = "10s"\n' + extra, encoding="utf-8")
    return folder


def child_processes(pid: int) -> list[int]:
    """The pids of a live process's children (Linux /proc; [] once it is gone)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
    except OSError:
        pass
    return found


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout: float = 20, what: str = "it") -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def query(folder: Path, sql: str, params=()) -> list[tuple]:
    """Read a site's database with a connection of our own: what is on disk."""
    conn = sqlite3.connect(str(folder / "data" / "listserv.db"), timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


class _Silence:
    def pack(self) -> bytes:
        return b""


class Zone:
    """The TXT records a loopback DNS server answers with, editable while it runs.

    `records` maps a name to a list of TXT values; a value is a string (sent in
    pieces of 255 bytes) or a list of the pieces. A name whose value is
    "TIMEOUT" is never answered; "SERVFAIL" fails. Any other name is NXDOMAIN.
    `asked` lists the names looked up, in order."""

    def __init__(self, records: dict | None = None):
        self.records = {k.lower().rstrip("."): v for k, v in (records or {}).items()}
        self.asked: list[str] = []

    def __setitem__(self, name: str, values) -> None:
        self.records[name.lower().rstrip(".")] = values

    def resolve(self, request, handler):
        from dnslib import QTYPE, RCODE, RR, TXT

        name = str(request.q.qname).rstrip(".").lower()
        self.asked.append(name)
        reply = request.reply()
        values = self.records.get(name)
        if values == "TIMEOUT":  # an empty datagram, which resolvers ignore: no answer
            return _Silence()
        if values == "SERVFAIL":
            reply.header.rcode = RCODE.SERVFAIL
        elif values is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in values:
                pieces = value if isinstance(value, list) else \
                    [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, ttl=300,
                                    rdata=TXT([p.encode() for p in pieces])))
        return reply


@contextmanager
def running_dns(records: dict | None = None):
    """A DNS server (dnslib's) on 127.0.0.1:<free port> over UDP; yields
    (zone, "127.0.0.1:PORT")."""
    from dnslib.server import DNSLogger, DNSServer

    zone = Zone(records)
    server = DNSServer(zone, address="127.0.0.1", port=0,
                       logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"))
    server.start_thread()
    try:
        yield zone, f"127.0.0.1:{server.server.server_address[1]}"
    finally:
        server.stop()
        server.server.server_close()


def dkim_verifies(data: bytes, nameserver: str) -> list[bool]:
    """Whether each DKIM signature on `data` verifies with dkimpy, its keys
    looked up at `nameserver` ("host:port")."""
    import dkim
    import dns.nameserver
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    host, port = nameserver.rsplit(":", 1)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(host, int(port))]
    resolver.lifetime = 5

    def txt(name: bytes, timeout: float = 5):
        try:
            answer = resolver.resolve(name.decode(), "TXT")
        except dns.exception.DNSException:
            return None
        return b"".join(next(iter(answer)).strings)

    checker = dkim.DKIM(data)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    return [dkim.DKIM(data).verify(index, dnsfunc=txt) for index in range(count)]
