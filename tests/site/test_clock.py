"""Retries keep their waits when the wall clock is stepped, on a real `listserv serve`.

The server runs under libfaketime, its wall clock read from a file the test
rewrites while it runs (the monotonic clock is left alone, as a real step
leaves it). Six members' first tries get 451 and wait for their retry
(10 s here); then the wall clock jumps an hour. Stepped back, the retries
used to stall for the hour (0 of 6 made); stepped forward, they came at
once. Each retry must come about 10 s after its first try either way.
"""

from __future__ import annotations

import glob
import os
import threading
import time

import pytest
from helpers import Server, listserv, make_site, query, send_mail, wait_until

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)
pytestmark = pytest.mark.skipif(LIBFAKETIME is None,
                                reason="libfaketime is not installed (apt-get install faketime)")
DOMAIN = "lists.example.org"
SLOW = [f"m{n}@slow.example" for n in range(6)]
WAIT = 10  # the retry schedule's one step, in seconds


@pytest.mark.parametrize("step", ["-1h", "+1h"])
def test_retries_keep_their_wait_when_the_wall_clock_steps(tmp_path, sink, monkeypatch, step):
    site = make_site(tmp_path, sink)
    config = site / "listserv.toml"
    config.write_text(config.read_text().replace('retry_schedule = ["1s", "2s"]',
                                                 f'retry_schedule = ["{WAIT}s"]'))
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--policy", "open", site=site)
    for address in SLOW:
        listserv("member", "add", "peace", address, "--preconfirmed", site=site)
    tries: dict[str, list[float]] = {address: [] for address in SLOW}
    lock = threading.Lock()

    def answer(rcpt: str):
        with lock:
            tries.setdefault(rcpt, []).append(time.monotonic())
            first = len(tries[rcpt]) == 1
        return "451 4.2.1 Mailbox busy, try later" if first else None
    sink.handler.answer = answer

    clock = tmp_path / "faketime"
    clock.write_text("+0\n")
    with monkeypatch.context() as env:  # the server's environment only
        for name in [n for n in os.environ if n.startswith("FAKETIME")]:
            env.delenv(name)  # a clock the whole suite runs under (FAKETIME=+365d) would win
        env.setenv("LD_PRELOAD", LIBFAKETIME)
        env.setenv("FAKETIME_TIMESTAMP_FILE", str(clock))
        env.setenv("FAKETIME_CACHE_DURATION", "1")
        env.setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        server = Server(site).start()
    try:
        send_mail(server.port, "ana@example.org", [f"peace@{DOMAIN}"],
                  "From: ana@example.org\nSubject: Wells\nMessage-ID: <clock-1@example.org>\n\n"
                  "The well runs.\n")
        wait_until(lambda: query(site, "SELECT count(*) FROM deliveries WHERE "
                                       "status = 'deferred'")[0][0] >= 1, 20,
                   "the first tries to be deferred")
        first = min(times[0] for times in tries.values() if times)
        clock.write_text(f"{step}\n")  # the wall clock jumps an hour
        wait_until(lambda: "the wall clock was stepped" in server.output(), 10,
                   "the server to notice the step")
        time.sleep(max(0.0, first + WAIT - 4 - time.monotonic()))
        early = sum(len(times) > 1 for times in tries.values())
        wait_until(lambda: all(len(times) >= 2 for times in tries.values()), WAIT + 15,
                   "every retry")
        output = server.output()
    finally:
        output = server.stop()
    waits = [times[1] - times[0] for times in tries.values()]
    assert early == 0, f"{early} retries came in a burst after the step: {waits}"
    assert all(WAIT - 1 <= wait <= WAIT + 6 for wait in waits), waits
    assert set(sink.recipients()) >= set(SLOW)
    line = next(line for line in output.splitlines() if "the wall clock was stepped" in line)
    assert ("-3600 s" if step == "-1h" else "+3600 s") in line, line
    assert "Traceback" not in output
