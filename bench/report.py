"""What the benchmark prints and records beside its figures.

`Window` measures the CPU our processes and everything else on the machine
used over a stretch of time (a disturbed run shows in `other_cpu_percent`);
`machine` describes the machine and the commit for the JSON; `table` is the
summary printed at the end, a row per workload; `say` writes progress to
stderr. Reads /proc and `git describe`; writes nothing but stderr.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from harness import machine_busy


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
        import uvloop
        loop = "uvloop" if uvloop else "asyncio"
    except ImportError:
        loop = "asyncio"
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(), "event_loop": loop,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "commit": commit}


def _cells(name: str, r: dict) -> tuple[str, str]:
    """(figure, ceiling) of one workload's row."""
    if name in ("w1", "w1dkim", "site"):
        figure = f"{r['figure']:,.0f} deliveries/s (peak RSS {r['rss_peak_mb']:.0f} MB)"
        if name == "site":
            figure = f"{r['figure']:,.1f} copies/s, {r['members']:,} × {r['posts']} signed"
        ceiling = f"{r['ceiling_figure']:,.0f}/s"
        if r.get("smtp_source_raw"):
            ceiling += f" (raw {r['smtp_source_raw']['per_second']:,.0f}/s)"
        return figure, ceiling
    if name == "big":
        return f"{r['figure']:.2f} s for {r['members']:,}", f"{r['ceiling_figure']:.2f} s"
    if name == "memory":
        return (f"{r['figure']:.0f} MB peak RSS ({r['members']:,} in {r['seconds']:.1f} s)",
                f"{r['ceiling_figure']:.1f} s")
    if name == "signing":
        return (f"RSA-2048 {r['rsa_us']:,.0f} µs, Ed25519 {r['ed25519_us']:,.0f} µs "
                f"per signature", "")
    return f"{r['figure']:,.0f} messages/s", f"{r['ceiling_figure']:,.0f}/s"


def table(results: dict) -> str:
    rows = [("workload", "figure", "ceiling", "of ceiling", "target", "met")]
    for name, r in results.items():
        if "error" in r:
            rows.append((name, "error: " + r["error"][:60], "", "", "", "NO"))
            continue
        figure, ceiling = _cells(name, r)
        ratio = f"{100 * r['ratio']:.0f}%" if r.get("ratio") is not None else ""
        met = "yes" if r["passed"] else "NO"
        if r.get("long_term"):
            met += f"; {r['long_term']}"
        rows.append((name, figure, ceiling, ratio, r["target"], met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)
