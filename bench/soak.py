"""Soak: a steady mixed load for minutes, and whether the server's memory levels off.

    .venv/bin/python bench/soak.py --minutes 4 --json bench/results/soak.json
    .venv/bin/python bench/soak.py --minutes 2 --tracemalloc /tmp/soak-traces

Two forums of 100 members each (some move to digest mode by command) on a real
`listserv serve` delivering to bench/sink.py; each second 50 posts (from 500
senders in turn, each text its own), 20 `-request` commands (help, index,
set mode, a subscribe that is never confirmed) and 5 delivery status
notifications to the forums' `-bounces` addresses; `listserv digest send`
every minute. It checks there is no backlog (every copy reaches the sink)
and samples the resident memory (VmRSS) of serve and of its handover child
every few seconds. It reports RSS at the start (after the first minute, when
caches have filled), in the middle and at the end, the growth after the
first minute (target < 10%) and the peak (target < 200 MB all the way).

With `--tracemalloc DIR` both processes start tracemalloc after 20 s
(slower from then: the figures are then not the ones to report) and dump a
snapshot at the first minute and at the end; the report lists what grew
most in each.
Writes only in a temporary folder (and DIR, and the --json file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import aiosmtplib

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    DOMAIN,
    Children,
    Server,
    Sink,
    listserv,
    make_post,
    make_site,
    member_addresses,
    poster,
    proc_status,
    run_async,
)

FORUMS = ("alpha", "beta")
POSTS, COMMANDS, DSNS = 50, 20, 5  # a second
SAMPLE_EVERY = 5.0
FIRST_MINUTE = 60.0
SITECUSTOMIZE = textwrap.dedent("""\
    # bench/soak.py --tracemalloc: SIGUSR1 starts tracing, then takes a snapshot.
    import os, signal, tracemalloc
    _count = [0]
    def _dump(signum, frame):
        if not tracemalloc.is_tracing():
            tracemalloc.start(int(os.environ.get("SOAK_FRAMES", "12")))
            return
        _count[0] += 1
        tracemalloc.take_snapshot().dump(os.path.join(
            os.environ["SOAK_TRACES"], f"{os.getpid()}-{_count[0]}.snap"))
    if os.environ.get("SOAK_TRACES"):
        signal.signal(signal.SIGUSR1, _dump)
    """)
TRACE_FROM = 20.0  # seconds: tracing starts (the first snapshot is at FIRST_MINUTE)


def command_mail(n: int, members: dict[str, list[str]]) -> tuple[str, str, bytes]:
    slug = FORUMS[n % 2]
    kind = n % 4
    if kind == 3:  # a stranger's subscribe, never confirmed
        sender = f"newcomer{n}@example.org"
        line = "subscribe"
    else:
        sender = members[slug][n % len(members[slug])]
        line = ("help", "index", f"set mode {'each' if n % 8 else 'digest'}")[kind]
    data = (f"From: {sender}\r\nTo: {slug}-request@{DOMAIN}\r\nSubject: {line}\r\n"
            f"Message-ID: <cmd-{n}-{time.time_ns()}@example.org>\r\n\r\n{line}\r\n")
    return sender, f"{slug}-request@{DOMAIN}", data.encode()


def dsn_mail(n: int, members: dict[str, list[str]]) -> tuple[str, str, bytes]:
    slug = FORUMS[n % 2]
    failed = members[slug][n % len(members[slug])]
    boundary = f"dsn{n}"
    data = (f"From: Mail Delivery System <MAILER-DAEMON@{failed.split('@')[1]}>\r\n"
            f"To: {slug}-bounces@{DOMAIN}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <dsn-{n}-{time.time_ns()}@example.net>\r\n"
            f"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; '
            f'boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
            f"Your message could not be delivered to {failed}.\r\n\r\n"
            f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.example.net\r\n\r\n"
            f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: 4.2.2\r\n"
            f"Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\r\n\r\n--{boundary}--\r\n")
    return "", f"{slug}-bounces@{DOMAIN}", data.encode()


async def load(port: int, seconds: float, members: dict[str, list[str]],
               counts: dict[str, int], errors: list[str]) -> None:
    """Each second, POSTS posts, COMMANDS commands and DSNS notifications, spread
    over the second on four kept-open connections."""
    clients = []
    for _ in range(4):
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60,
                                 start_tls=None, validate_certs=False)
        await client.connect()
        clients.append(client)
    start = time.monotonic()
    second = 0
    while time.monotonic() - start < seconds:
        batch = []
        for i in range(POSTS):
            number = second * POSTS + i
            sender = poster(number, 500)
            batch.append(("post", sender, f"{FORUMS[number % 2]}@{DOMAIN}",
                          make_post(number, 2048, f"{FORUMS[number % 2]}@{DOMAIN}", sender)))
        for i in range(COMMANDS):
            batch.append(("command", *command_mail(second * COMMANDS + i, members)))
        for i in range(DSNS):
            batch.append(("dsn", *dsn_mail(second * DSNS + i, members)))
        random.Random(second).shuffle(batch)

        async def send(client, items):
            for kind, sender, rcpt, data in items:
                try:
                    await client.sendmail(sender, [rcpt], data)
                    counts[kind] += 1
                except aiosmtplib.SMTPException as error:
                    errors.append(f"{kind}: {error}")
        await asyncio.gather(*(send(client, batch[k::4]) for k, client in enumerate(clients)))
        second += 1
        pause = start + second - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
    for client in clients:
        await client.quit()


def rss_of(server: Server) -> dict[str, int]:
    """VmRSS in kB of serve and of its handover child (0 when not running)."""
    pids = server.processes()
    found = {"serve": 0, "handover": 0}
    for role, pid in zip(("serve", "handover"), pids):
        try:
            found[role] = proc_status(pid).get("VmRSS", 0)
        except OSError:
            pass
    return found


def top_growth(traces: Path, pid: int, limit: int = 12) -> list[str]:
    import tracemalloc
    first, last = traces / f"{pid}-1.snap", traces / f"{pid}-2.snap"
    if not (first.exists() and last.exists()):
        return [f"(no snapshots for process {pid})"]
    before = tracemalloc.Snapshot.load(str(first))
    after = tracemalloc.Snapshot.load(str(last))
    lines = []
    for stat in after.compare_to(before, "traceback")[:limit]:
        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback[:4])
        lines.append(f"{stat.size_diff / 1024:+9.0f} KiB {stat.count_diff:+7d} blocks  {frames}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--tracemalloc", type=Path, metavar="DIR",
                        help="snapshots of both processes at the first minute and the end")
    args = parser.parse_args()
    seconds = args.minutes * 60
    children = Children()
    sink = Sink(children)
    with tempfile.TemporaryDirectory(prefix="listserv-soak-") as tmp:
        folder = Path(tmp) / "site"
        members = {slug: [a.replace("@", f".{slug}@") for a in member_addresses(100, 10)]
                   for slug in FORUMS}
        make_site(folder, sink.address, members)
        for slug in FORUMS:  # `set mode digest` commands move some members to digests
            listserv("forum", "edit", slug, "--digest", "daily", site=folder)
        env_backup = dict(os.environ)
        if args.tracemalloc:
            args.tracemalloc.mkdir(parents=True, exist_ok=True)
            custom = Path(tmp) / "custom"
            custom.mkdir()
            (custom / "sitecustomize.py").write_text(SITECUSTOMIZE)
            os.environ["PYTHONPATH"] = os.pathsep.join(
                [str(custom), *filter(None, [os.environ.get("PYTHONPATH")])])
            os.environ["SOAK_TRACES"] = str(args.tracemalloc)
        try:
            server = Server(children, folder)
        finally:
            os.environ.clear()
            os.environ.update(env_backup)
        counts = {"post": 0, "command": 0, "dsn": 0}
        errors: list[str] = []
        samples: list[tuple[float, dict[str, int]]] = []
        done = threading.Event()
        start = time.monotonic()
        dumped = []

        def sample() -> None:
            while not done.is_set():
                at = time.monotonic() - start
                samples.append((at, rss_of(server)))
                if args.tracemalloc and len(dumped) < 2 and at >= (TRACE_FROM, FIRST_MINUTE)[
                        len(dumped)]:
                    dumped.append(server.processes())
                    for pid in dumped[-1]:
                        os.kill(pid, signal.SIGUSR1)
                done.wait(SAMPLE_EVERY)

        def digests() -> None:
            while not done.wait(60):
                try:
                    listserv("digest", "send", site=folder)
                    counts["digest"] = counts.get("digest", 0) + 1
                except RuntimeError as error:
                    errors.append(f"digest send: {error}")

        threads = [threading.Thread(target=sample, daemon=True),
                   threading.Thread(target=digests, daemon=True)]
        for thread in threads:
            thread.start()
        before = sink.stats()
        run_async(load(server.port, seconds, members, counts, errors))
        # No backlog: every post's copies reach the sink within a few seconds.
        expected = counts["post"] * 100
        stats, complete = sink.wait_for(before, expected, stall=20)
        samples.append((time.monotonic() - start, rss_of(server)))
        if args.tracemalloc:
            for pid in server.processes():
                os.kill(pid, signal.SIGUSR1)
            time.sleep(3)
        done.set()
        for thread in threads:
            thread.join(5)
        pids = server.processes()
        server.stop()
        sink_recipients = stats.recipients - before.recipients

    def total(at_sample) -> float:
        return sum(at_sample[1].values()) / 1024

    after_minute = [s for s in samples if s[0] >= FIRST_MINUTE] or samples
    first, last = after_minute[0], samples[-1]
    middle = min(after_minute, key=lambda s: abs(s[0] - (first[0] + last[0]) / 2))
    peak = max(samples, key=total)
    growth = (total(last) - total(first)) / total(first) * 100
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "minutes": args.minutes, "sent": counts, "errors": len(errors),
        "copies_expected": expected, "copies_at_sink": sink_recipients,
        "backlog": not complete,
        "rss_mb": {name: {"at_s": round(s[0]), "serve": round(s[1]["serve"] / 1024, 1),
                          "handover": round(s[1]["handover"] / 1024, 1),
                          "total": round(total(s), 1)}
                   for name, s in (("start", first), ("middle", middle), ("end", last),
                                   ("peak", peak))},
        "growth_after_first_minute_percent": round(growth, 1),
        "targets_met": growth < 10 and total(peak) < 200 and complete,
    }
    print(json.dumps(report, indent=2))
    for line in errors[:5]:
        print("error:", line, file=sys.stderr)
    if args.tracemalloc:
        for role, pid in zip(("serve", "handover"), pids):
            print(f"\ntracemalloc, {role} (process {pid}): what grew from the first minute "
                  f"to the end", file=sys.stderr)
            for line in top_growth(args.tracemalloc, pid):
                print("  " + line, file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
