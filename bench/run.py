"""listserv's benchmark (SPEC §9): each figure beside its ceiling, in one run.

    python bench/run.py [--quick] [--only w1,big,...] [--json FILE] [--repeat N]
                        [--sink python|postfix] [--site-posts N] [--keep] [--profile DIR]

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
- w1dkim: W1 with DKIM on (the RSA-2048 key `listserv init` makes), copies
  identical, so signed once per body; the others run with DKIM off.
- site: the "real site": W1's members with DKIM on and `[web] url` set, so
  every copy is personal (one recipient per transaction, signed per copy);
  fewer posts than W1 by default (`--site-posts`), as each copy costs an
  RSA signature.
- signing: µs per DKIM signature of a copy, RSA-2048 and Ed25519.

The ceiling of a fan-out is `harness.hand_over`: the copies the server
stored, with the same recipients per transaction, handed to the same sink by
the same client library with the server's concurrency and batch size
(signed as the server signs them for w1dkim and site: `dkim_load.py`), or,
with `--sink postfix`, Postfix's smtp-source to smtp-sink (`postfix_sink.py`).
The ceiling of intake is the same clients sending the same messages to the sink.
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
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import dkim_load
import postfix_sink
from harness import (
    DOMAIN,
    Children,
    Server,
    Sink,
    copies_and_recipients,
    delivery_settings,
    die_with_parent,
    hand_over,
    make_post,
    make_site,
    member_addresses,
    poster,
    run_async,
    submit_many,
)
from report import Window, machine, say, table

WORKLOADS = ("w1", "big", "intake", "memory", "w1dkim", "site", "signing")
POSTFIX_WORKLOADS = ("w1", "big", "memory")  # plain fan-outs: smtp-source is their ceiling
SENDERS = 500  # posts come from this many people in turn, each text its own
FULL = {"w1": {"members": 2000, "posts": 100}, "big": {"members": 10_000},
        "intake": {"messages": 2000, "clients": 8}, "memory": {"members": 100_000},
        "site": {"members": 2000, "posts": 5}, "repeat": 3}
QUICK = {"w1": {"members": 1000, "posts": 10}, "big": {"members": 2000},
         "intake": {"messages": 300, "clients": 8}, "memory": {"members": 10_000},
         "site": {"members": 500, "posts": 1}, "repeat": 1}


class Bench:
    def __init__(self, args, sizes: dict):
        self.args, self.sizes = args, sizes
        self.repeat = args.repeat or sizes["repeat"]
        self.children = Children()
        self.tmp = Path(tempfile.mkdtemp(prefix="listserv-bench-"))
        self.postfix = args.sink == "postfix"
        self.sink = (postfix_sink.PostfixSink if self.postfix else Sink)(self.children)
        self.sink_cpu = lambda: self.sink.stats().cpu
        self.last_jobs: list = []
        self.last_base: Path | None = None  # the last fan-out's site, before any run

    def close(self) -> None:
        self.children.stop_all()
        if self.args.keep:
            say(f"sites kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def build(self, name: str, forums: dict, kind: str = "plain") -> Path:
        say(f"{name}: building the site ({sum(map(len, forums.values())):,} members, "
            f"{'DKIM off' if kind == 'plain' else 'DKIM on'}"
            f"{', [web] url set' if kind == 'site' else ''})")
        return make_site(self.tmp / f"{name}-base", self.sink.address, forums,
                         self.args.concurrency, self.args.batch_size,
                         getattr(self.args, "archive", "public"), dkim_load.site_config(kind))

    def copy(self, base: Path, name: str, run: int) -> Path:
        site = self.tmp / f"{name}-{run}"
        shutil.copytree(base, site)
        return site

    def server(self, site: Path, name: str, run: int) -> Server:
        profile = self.args.profile / f"{name}-{run}.txt" if self.args.profile else None
        return Server(self.children, site, profile)

    # -- fan-out: w1, big and memory ------------------------------------------------------
    def fanout(self, name: str, members: int, posts: int, kind: str = "plain",
               repeat: int | None = None) -> dict:
        base = self.last_base = self.build(
            name, {"bench": member_addresses(members, self.args.domains)}, kind)
        settings = delivery_settings(base)
        runs = []
        for run in range(1, (repeat or self.repeat) + 1):
            runs.append(self.fanout_once(name, self.copy(base, name, run), run, members,
                                         posts, settings, kind))
        complete = all(r["complete"] for r in runs)
        best = max(runs, key=lambda r: r["per_second"])
        best_ceiling = max(runs, key=lambda r: r["ceiling"]["per_second"])["ceiling"]
        return {"members": members, "posts": posts, "domains": self.args.domains,
                "dkim": kind != "plain", "personal_copies": kind == "site",
                "sink": self.args.sink, "concurrency": settings.concurrency,
                "batch_size": settings.batch_size,
                "complete": complete, "per_second": best["per_second"],
                "seconds": best["seconds"], "ceiling_per_second": best_ceiling["per_second"],
                "ceiling_seconds": best_ceiling["seconds"],
                "rss_peak_mb": max(r["rss_peak_mb"] for r in runs),
                "paired_ratio_median": round(statistics.median(
                    r["per_second"] / r["ceiling"]["per_second"] for r in runs), 3),
                "runs": runs}

    def fanout_once(self, name, site, run, members, posts, settings, kind) -> dict:
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
            end, complete = self.sink.wait_for(base, expected, site=site)
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
        label = f"{name} #{run}"
        if kind == "plain":
            jobs = self.last_jobs = copies_and_recipients(site, settings.batch_size)
            result["ceiling"] = self.ceiling(label, jobs, settings.concurrency)
        else:  # the same copies, signed on the ceiling's clock as the server signs them
            jobs = self.last_jobs = dkim_load.signed_jobs(site, kind, settings.batch_size)
            result["ceiling"] = self.ceiling(label, jobs, settings.concurrency, sign=(
                dkim_load.signing(kind, dkim_load.site_signer(site))))
        say(f"{name} #{run}: {result['per_second']:,.0f}/s in {seconds:.2f} s; ceiling "
            f"{result['ceiling']['per_second']:,.0f}/s in {result['ceiling']['seconds']:.2f} s")
        if not self.args.keep:
            shutil.rmtree(site, ignore_errors=True)
        return result

    def ceiling(self, label: str, jobs: list, concurrency: int, sign=None) -> dict:
        recipients = sum(len(job[1]) for job in jobs)
        if self.postfix:
            say(f"{label}: ceiling, smtp-source: {len(jobs):,} transactions to smtp-sink")
            return postfix_sink.smtp_source(self.sink, jobs, concurrency)
        say(f"{label}: ceiling, {len(jobs):,} transactions straight to the sink"
            f"{', signed' if sign else ''}")
        base, cpu = self.sink.stats(), time.process_time()
        window = Window(self.sink_cpu)
        start = run_async(hand_over(self.sink.port, jobs, concurrency, sign=sign))
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
        if self.postfix:  # smtp-sink is C: the check is against the machine's limit instead
            say("w1: smtp-source alone, 2,000 messages × 100 recipients, 8 connections")
            raw = result["smtp_source_raw"] = postfix_sink.raw_rate(self.sink)
            share = result["per_second"] / raw["per_second"]
            say(f"w1: smtp-source raw {raw['per_second']:,.0f}/s; the server has "
                f"{share:.0%} of it (long-term target 50%)")
            result["of_raw_smtp_source"] = round(share, 3)
            result["long_term"] = f"{share:.0%} of raw smtp-source (long term: 50%)"
            return {**self.rate(result, 0.8), "passed": result["complete"],
                    "target": "reported (the 80% is against the Python ceiling)"}
        result["sink_check"] = self.sink_check(self.last_jobs[:400], result["concurrency"])
        return self.rate(result, 0.8)

    def w1dkim(self) -> dict:
        size = self.sizes["w1"]
        return self.rate(self.fanout("w1dkim", size["members"], size["posts"], "dkim"), 0.8)

    def site(self) -> dict:
        size = self.sizes["site"]
        posts = self.args.site_posts or size["posts"]
        return self.rate(self.fanout("site", size["members"], posts, "site"), 0.7)

    def rate(self, result: dict, target: float) -> dict:
        ratio = result["per_second"] / result["ceiling_per_second"]
        return {**result, "figure": result["per_second"], "unit": "deliveries/s",
                "ceiling_figure": result["ceiling_per_second"], "ratio": round(ratio, 3),
                "target": f">= {target:.0%} of the ceiling",
                "passed": result["complete"] and ratio >= target}

    def signing(self) -> dict:
        """µs per signature of a personal copy the server made (the last `site`
        run's, or one post to a small site of that kind), with its keys."""
        if not (self.last_jobs and self.last_jobs[0][2].startswith(b"List-Unsubscribe")):
            self.fanout("signing", 20, 1, "site", repeat=1)
        data = self.last_jobs[0][2]
        say(f"signing: timing DKIM signatures of a {len(data):,}-byte copy")
        cost = dkim_load.signing_cost(self.last_base, data)
        say(f"signing: RSA-2048 {cost['rsa']['median_us']:,.0f} µs, Ed25519 "
            f"{cost['ed25519']['median_us']:,.0f} µs per signature (median)")
        return {**cost, "rsa_us": cost["rsa"]["median_us"],
                "ed25519_us": cost["ed25519"]["median_us"], "ratio": None,
                "target": "(a note: no target)", "passed": True}

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
        base_site = self.build("intake", {"intake": member_addresses(1, 1)})
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
            end, complete = self.sink.wait_for(base, count, site=site)
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


def main() -> int:
    parser = argparse.ArgumentParser(description="listserv's benchmark (SPEC §9)")
    parser.add_argument("--quick", action="store_true", help="a small run (under a minute)")
    parser.add_argument("--only", help="comma-separated workloads: " + ", ".join(WORKLOADS)
                        + " (default: all; with --sink postfix, w1)")
    parser.add_argument("--sink", choices=("python", "postfix"), default="python",
                        help="where copies go: bench/sink.py, or Postfix's smtp-sink with "
                             "smtp-source as the ceiling (" + ", ".join(POSTFIX_WORKLOADS) + ")")
    parser.add_argument("--site-posts", type=int,
                        help="posts of the site workload (default 5; W1 has 100)")
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
    only = args.only or ("w1" if args.sink == "postfix" else ",".join(WORKLOADS))
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(WORKLOADS)}")
    if args.sink == "postfix":
        others = sorted(set(chosen) - set(POSTFIX_WORKLOADS))
        if others:
            parser.error(f"--sink postfix runs {', '.join(POSTFIX_WORKLOADS)} (smtp-source "
                         f"cannot sign or submit): not {', '.join(others)}")
        if postfix_sink.missing():
            parser.error(f"--sink postfix: {postfix_sink.missing()}")
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
