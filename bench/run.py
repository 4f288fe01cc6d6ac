"""listserv's benchmark (SPEC §9): each figure beside its ceiling, in one run.

    python bench/run.py [--quick] [--only w1,big,intake,memory] [--json FILE]
                        [--repeat N] [--keep] [--profile DIR]

Builds real sites in a temporary folder with the real command line, runs
`listserv serve` as a subprocess that delivers to a lean SMTP sink
(`sink.py`, its own process), and measures:

- w1: one forum of 2,000 members on 20 domains, 100 posts of ~4 KB
  submitted back to back over one SMTP connection; recipient deliveries/s
  from the first submit to the last delivery at the sink; peak RSS.
- big: one post to a 10,000-member forum; seconds from submit to the last
  delivery.
- intake: 2,000 messages of ~4 KB from 8 concurrent SMTP clients to a forum
  of one member; accepted messages/s (the pipeline and delivery run
  meanwhile, as they would).
- memory: one post to a 100,000-member forum; peak RSS (VmHWM) of serve.

The ceiling of a fan-out is `harness.hand_over`: the copies the server
stored, with the same recipients per transaction, handed to the same sink by
the same client library with the server's concurrency and batch size. The
ceiling of intake is the same clients sending the same messages to the sink.
Each repetition runs the server, then its ceiling, on a fresh copy of the
site; the figure is the best repetition and the ceiling the best ceiling
(noise from other work on the machine only ever slows a run down). Every
repetition is kept in the JSON, with the CPU that other processes used
meanwhile (`other_cpu_percent`, in % of one core) so a disturbed run shows.
Prints a table and writes JSON; the sites are removed unless --keep.
Not part of the test suite: nothing here is timed under pytest.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from harness import (
    DOMAIN,
    Children,
    Server,
    Sink,
    copies_and_recipients,
    delivery_settings,
    die_with_parent,
    hand_over,
    machine_busy,
    make_post,
    make_site,
    member_addresses,
    poster,
    run_async,
    submit_many,
)

WORKLOADS = ("w1", "big", "intake", "memory")
SENDERS = 500  # posts come from this many people in turn, each text its own
FULL = {"w1": {"members": 2000, "posts": 100}, "big": {"members": 10_000},
        "intake": {"messages": 2000, "clients": 8}, "memory": {"members": 100_000},
        "repeat": 3}
QUICK = {"w1": {"members": 1000, "posts": 10}, "big": {"members": 2000},
         "intake": {"messages": 300, "clients": 8}, "memory": {"members": 10_000},
         "repeat": 1}


class Window:
    """A measured stretch of time: what our processes and everything else used."""

    def __init__(self, *pids_cpu):
        self.readers = pids_cpu  # callables giving CPU seconds of our processes
        self.start = time.monotonic()
        self.busy = machine_busy()
        self.ours = self._ours()

    def _ours(self) -> float:
        return time.process_time() + sum(read() for read in self.readers)

    def other_cpu_percent(self) -> float:
        wall = time.monotonic() - self.start
        other = (machine_busy() - self.busy) - (self._ours() - self.ours)
        return round(max(other, 0) / wall * 100, 1)


class Bench:
    def __init__(self, args, sizes: dict):
        self.args, self.sizes = args, sizes
        self.repeat = args.repeat or sizes["repeat"]
        self.children = Children()
        self.tmp = Path(tempfile.mkdtemp(prefix="listserv-bench-"))
        self.sink = Sink(self.children)
        self.sink_cpu = lambda: self.sink.stats().cpu
        self.last_jobs: list = []

    def close(self) -> None:
        self.children.stop_all()
        if self.args.keep:
            say(f"sites kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def site(self, name: str, forums: dict) -> Path:
        say(f"{name}: building the site ({sum(map(len, forums.values())):,} members)")
        return make_site(self.tmp / f"{name}-base", self.sink.address, forums,
                         self.args.concurrency, self.args.batch_size,
                         getattr(self.args, "archive", "public"))

    def copy(self, base: Path, name: str, run: int) -> Path:
        site = self.tmp / f"{name}-{run}"
        shutil.copytree(base, site)
        return site

    def server(self, site: Path, name: str, run: int) -> Server:
        profile = self.args.profile / f"{name}-{run}.txt" if self.args.profile else None
        return Server(self.children, site, profile)

    # -- fan-out: w1, big and memory ------------------------------------------------------
    def fanout(self, name: str, members: int, posts: int) -> dict:
        base = self.site(name, {"bench": member_addresses(members, self.args.domains)})
        settings = delivery_settings(base)
        runs = []
        for run in range(1, self.repeat + 1):
            runs.append(self.fanout_once(name, self.copy(base, name, run), run, members,
                                         posts, settings))
        complete = all(r["complete"] for r in runs)
        best = max(runs, key=lambda r: r["per_second"])
        best_ceiling = max(runs, key=lambda r: r["ceiling"]["per_second"])["ceiling"]
        return {"members": members, "posts": posts, "domains": self.args.domains,
                "concurrency": settings.concurrency, "batch_size": settings.batch_size,
                "complete": complete, "per_second": best["per_second"],
                "seconds": best["seconds"], "ceiling_per_second": best_ceiling["per_second"],
                "ceiling_seconds": best_ceiling["seconds"],
                "rss_peak_mb": max(r["rss_peak_mb"] for r in runs),
                "paired_ratio_median": round(statistics.median(
                    r["per_second"] / r["ceiling"]["per_second"] for r in runs), 3),
                "runs": runs}

    def fanout_once(self, name, site, run, members, posts, settings) -> dict:
        senders = [poster(number, SENDERS) for number in range(posts)]
        messages = [make_post(number, sender=sender) for number, sender in enumerate(senders)]
        expected = members * posts
        server = self.server(site, name, run)
        try:
            idle = server.memory()
            base, cpu, main = self.sink.stats(), server.cpu(), server.main_thread_cpu()
            threads = server.threads_cpu()
            handover = server.children_cpu()
            window = Window(server.cpu, self.sink_cpu)
            say(f"{name} #{run}: {posts} post(s) to {members:,} members "
                f"({expected:,} deliveries)")
            with smtplib.SMTP("127.0.0.1", server.port) as client:
                start = time.monotonic()
                for sender, message in zip(senders, messages):
                    client.sendmail(sender, [f"bench@{DOMAIN}"], message)
                submitted = time.monotonic() - start
            end, complete = self.sink.wait_for(base, expected)
            other = window.other_cpu_percent()
            memory, cpu = server.memory(), server.cpu() - cpu
            main = server.main_thread_cpu() - main
            threads = {name: {"user": round(user - threads.get(name, (0, 0))[0], 2),
                              "system": round(system - threads.get(name, (0, 0))[1], 2)}
                       for name, (user, system) in server.threads_cpu().items()}
            handover = server.children_cpu() - handover
        finally:
            server.stop()
        seconds = end.last - start
        delivered = end.recipients - base.recipients
        if not complete:
            say(f"{name} #{run}: INCOMPLETE: {delivered:,} of {expected:,} arrived; "
                f"serve log:\n{server.tail()}")
        result = {
            "run": run, "deliveries": delivered, "expected": expected, "complete": complete,
            "seconds": round(seconds, 3), "per_second": round(delivered / seconds, 1),
            "submit_seconds": round(submitted, 3), "transactions": end.messages - base.messages,
            "server_cpu_seconds": round(cpu, 2),
            "server_main_thread_cpu_seconds": round(main, 2),
            "server_handover_cpu_seconds": round(handover, 2),
            "server_thread_cpu_seconds": threads,
            "handover_cpu_us_per_delivery": round(handover / max(delivered, 1) * 1e6, 1),
            "server_cpu_us_per_delivery": round(cpu / max(delivered, 1) * 1e6, 1),
            "sink_cpu_percent": round(100 * (end.cpu - base.cpu) / seconds, 1),
            "other_cpu_percent": other,
            "rss_idle_mb": round(idle["VmRSS"] / 1024, 1),
            "rss_peak_mb": round(memory["VmHWM"] / 1024, 1)}
        jobs = self.last_jobs = copies_and_recipients(site, settings.batch_size)
        result["ceiling"] = self.ceiling(f"{name} #{run}", jobs, settings.concurrency)
        say(f"{name} #{run}: {result['per_second']:,.0f}/s in {seconds:.2f} s; ceiling "
            f"{result['ceiling']['per_second']:,.0f}/s in {result['ceiling']['seconds']:.2f} s")
        if not self.args.keep:
            shutil.rmtree(site, ignore_errors=True)
        return result

    def ceiling(self, label: str, jobs: list, concurrency: int) -> dict:
        recipients = sum(len(job[1]) for job in jobs)
        say(f"{label}: ceiling, {len(jobs):,} transactions straight to the sink")
        base, cpu = self.sink.stats(), time.process_time()
        window = Window(self.sink_cpu)
        start = run_async(hand_over(self.sink.port, jobs, concurrency))
        other = window.other_cpu_percent()
        cpu = time.process_time() - cpu
        end = self.sink.stats()
        seconds = end.last - start
        sink_cpu = end.cpu - base.cpu
        return {"deliveries": end.recipients - base.recipients, "expected": recipients,
                "transactions": len(jobs), "seconds": round(seconds, 3),
                "per_second": round(recipients / seconds, 1),
                "client_cpu_seconds": round(cpu, 2),
                "client_cpu_us_per_delivery": round(cpu / max(recipients, 1) * 1e6, 1),
                "sink_cpu_percent": round(100 * sink_cpu / seconds, 1),
                "sink_cpu_us_per_delivery": round(sink_cpu / max(recipients, 1) * 1e6, 2),
                "other_cpu_percent": other}

    # -- the workloads -----------------------------------------------------------------------
    def w1(self) -> dict:
        size = self.sizes["w1"]
        result = self.fanout("w1", size["members"], size["posts"])
        result["sink_check"] = self.sink_check(self.last_jobs[:400], result["concurrency"])
        ratio = result["per_second"] / result["ceiling_per_second"]
        return {**result, "figure": result["per_second"], "unit": "deliveries/s",
                "ceiling_figure": result["ceiling_per_second"], "ratio": round(ratio, 3),
                "target": ">= 80% of the ceiling",
                "passed": result["complete"] and ratio >= 0.8}

    def big(self) -> dict:
        result = self.fanout("big", self.sizes["big"]["members"], 1)
        ratio = result["ceiling_seconds"] / result["seconds"]
        return {**result, "figure": result["seconds"], "unit": "s",
                "ceiling_figure": result["ceiling_seconds"], "ratio": round(ratio, 3),
                "target": "< 2 s", "passed": result["complete"] and result["seconds"] < 2}

    def memory(self) -> dict:
        result = self.fanout("memory", self.sizes["memory"]["members"], 1)
        ratio = result["ceiling_seconds"] / result["seconds"]
        return {**result, "figure": result["rss_peak_mb"], "unit": "MB",
                "ceiling_figure": result["ceiling_seconds"], "ratio": round(ratio, 3),
                "target": "< 200 MB peak RSS",
                "passed": result["complete"] and result["rss_peak_mb"] < 200}

    def intake(self) -> dict:
        size = self.sizes["intake"]
        count, clients = size["messages"], size["clients"]
        base_site = self.site("intake", {"intake": member_addresses(1, 1)})
        runs = [self.intake_once(self.copy(base_site, "intake", run), run, count, clients)
                for run in range(1, self.repeat + 1)]
        best = max(r["per_second"] for r in runs)
        ceiling = max(r["ceiling"]["per_second"] for r in runs)
        return {"messages": count, "clients": clients, "per_second": best,
                "ceiling_per_second": ceiling,
                "rss_peak_mb": max(r["rss_peak_mb"] for r in runs),
                "figure": best, "unit": "messages/s", "ceiling_figure": ceiling,
                "ratio": round(best / ceiling, 3), "target": ">= 200 messages/s",
                "passed": best >= 200, "runs": runs}

    def intake_once(self, site: Path, run: int, count: int, clients: int) -> dict:
        to = f"intake@{DOMAIN}"
        senders = [poster(number, SENDERS) for number in range(count)]
        messages = [(sender, make_post(number, to=to, sender=sender))
                    for number, sender in enumerate(senders)]
        server = self.server(site, "intake", run)
        try:
            base, cpu = self.sink.stats(), server.cpu()
            window = Window(server.cpu, self.sink_cpu)
            say(f"intake #{run}: {count:,} messages from {clients} clients")
            start = time.monotonic()
            seconds = run_async(submit_many(server.port, messages, clients, to))
            other = window.other_cpu_percent()
            intake_cpu = server.cpu() - cpu
            end, complete = self.sink.wait_for(base, count)
            memory, cpu = server.memory(), server.cpu() - cpu
        finally:
            server.stop()
        say(f"intake #{run}: ceiling, the same clients to the sink")
        window = Window(self.sink_cpu)
        ceiling = run_async(submit_many(self.sink.port, messages, clients, to))
        ceiling_other = window.other_cpu_percent()
        say(f"intake #{run}: {count / seconds:,.0f}/s; ceiling {count / ceiling:,.0f}/s")
        if not self.args.keep:
            shutil.rmtree(site, ignore_errors=True)
        return {"run": run, "seconds": round(seconds, 3), "per_second": round(count / seconds, 1),
                "all_delivered_seconds": round(end.last - start, 3) if complete else None,
                "server_cpu_percent_during_intake": round(100 * intake_cpu / seconds, 1),
                "server_cpu_ms_per_message": round(cpu / count * 1e3, 2),
                "other_cpu_percent": other, "rss_peak_mb": round(memory["VmHWM"] / 1024, 1),
                "ceiling": {"seconds": round(ceiling, 3),
                            "per_second": round(count / ceiling, 1),
                            "other_cpu_percent": ceiling_other}}

    def sink_check(self, jobs: list, concurrency: int) -> dict:
        """Is the sink the limit? Two ceiling clients, each in its own process,
        hand the same W1 transactions at once; their sum against one client's rate."""
        recipients = sum(len(job[1]) for job in jobs)
        say("sink check: one ceiling client, then two at once")
        base = self.sink.stats()
        start = run_async(hand_over(self.sink.port, jobs, concurrency))
        one = self.sink.stats()
        context = multiprocessing.get_context("fork")
        go = context.Event()
        procs = [context.Process(target=_ceiling_child, daemon=True,
                                 args=(self.sink.port, jobs, concurrency, go))
                 for _ in range(2)]
        for proc in procs:
            proc.start()
        time.sleep(0.5)  # both ready to connect
        base2 = self.sink.stats()
        two_start = time.monotonic()
        go.set()
        for proc in procs:
            proc.join()
        two = self.sink.stats()
        return {"one_client_per_second": round(recipients / (one.last - start), 1),
                "two_clients_per_second": round(2 * recipients / (two.last - two_start), 1),
                "sink_cpu_us_per_delivery": round(
                    (one.cpu - base.cpu) / max(one.recipients - base.recipients, 1) * 1e6, 2),
                "sink_cpu_percent_two_clients": round(
                    100 * (two.cpu - base2.cpu) / (two.last - two_start), 1)}


def _ceiling_child(port: int, jobs: list, concurrency: int, go) -> None:
    die_with_parent()
    go.wait()
    run_async(hand_over(port, jobs, concurrency))


# -- reporting -----------------------------------------------------------------------------
def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle
                          if line.startswith("model name")), "")
    except OSError:
        pass
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(), "event_loop": loop,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "commit": commit}


def table(results: dict) -> str:
    rows = [("workload", "figure", "ceiling", "of ceiling", "target", "met")]
    for name, r in results.items():
        if "error" in r:
            rows.append((name, "error: " + r["error"][:60], "", "", "", "NO"))
            continue
        if name == "w1":
            figure = f"{r['figure']:,.0f} deliveries/s (peak RSS {r['rss_peak_mb']:.0f} MB)"
            ceiling = f"{r['ceiling_figure']:,.0f}/s"
        elif name == "big":
            figure = f"{r['figure']:.2f} s for {r['members']:,}"
            ceiling = f"{r['ceiling_figure']:.2f} s"
        elif name == "memory":
            figure = f"{r['figure']:.0f} MB peak RSS ({r['members']:,} in {r['seconds']:.1f} s)"
            ceiling = f"{r['ceiling_figure']:.1f} s"
        else:
            figure = f"{r['figure']:,.0f} messages/s"
            ceiling = f"{r['ceiling_figure']:,.0f}/s"
        rows.append((name, figure, ceiling, f"{100 * r['ratio']:.0f}%", r["target"],
                     "yes" if r["passed"] else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description="listserv's benchmark (SPEC §9)")
    parser.add_argument("--quick", action="store_true", help="a small run (under a minute)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help="comma-separated workloads: " + ", ".join(WORKLOADS))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--repeat", type=int,
                        help="repetitions per workload, best kept (default 3; 1 with --quick)")
    parser.add_argument("--domains", type=int, default=20,
                        help="recipient domains members are spread over (default 20)")
    parser.add_argument("--concurrency", type=int,
                        help="[delivery] concurrency for server and ceiling (default: the site's)")
    parser.add_argument("--batch-size", type=int,
                        help="[delivery] batch_size for server and ceiling (default: the site's)")
    parser.add_argument("--archive", choices=("public", "members", "none"), default="public",
                        help="the bench forums' archive policy (archive_bench.py compares)")
    parser.add_argument("--keep", action="store_true", help="keep the sites for inspection")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record each serve with py-spy (on PATH) into DIR/NAME-RUN.txt "
                             "as collapsed stacks; read them with bench/hotspots.py "
                             "(the figures are then not comparable)")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(WORKLOADS)}")
    report = {"machine": machine(), "quick": args.quick,
              "command": " ".join(["python"] + sys.argv), "results": {}}
    bench = Bench(args, QUICK if args.quick else FULL)
    report["repeat"] = bench.repeat
    try:
        for name in chosen:
            try:
                report["results"][name] = getattr(bench, name)()
            except Exception as error:  # one broken workload does not end the run
                say(f"{name}: failed:\n{traceback.format_exc()}")
                report["results"][name] = {"error": str(error), "passed": False}
    finally:
        bench.close()
    report["seconds"] = round(time.monotonic() - START, 1)
    print(table(report["results"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        say(f"results written to {args.json}")
    return 0 if all(r.get("passed") for r in report["results"].values()) else 1


START = time.monotonic()

if __name__ == "__main__":
    sys.exit(main())
