"""Where the time goes: a summary of a py-spy profile taken by `run.py --profile`.

    python bench/hotspots.py DIR/NAME.txt [--top 25] [--match TEXT]

Reads py-spy's collapsed stacks ("thread (tid): name;frame;frame count"),
and prints the share of samples per thread, then the functions with the most
samples anywhere on the stack (inclusive) and at the top of it (self).
Frames are shown without line numbers so a function's lines add up.
`--match` keeps only stacks that contain TEXT. Reads one file, writes
nothing.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

LINE = re.compile(r"\s*\((.*?):\d+\)$")


def frame_name(frame: str) -> str:
    """'Writer._run (listserv/site/store.py:303)' -> 'Writer._run (listserv/site/store.py)'."""
    return LINE.sub(lambda m: f" ({m.group(1)})", frame.strip())


def read(path: str, match: str = ""):
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit() or (match and match not in stack):
                continue
            thread, _, frames = stack.partition(";")
            yield thread.split(":", 1)[-1].strip() or thread, \
                [frame_name(f) for f in frames.split(";") if f], int(count)


def summarise(path: str, top: int, match: str) -> str:
    threads, inclusive, own = Counter(), Counter(), Counter()
    total = 0
    for thread, frames, count in read(path, match):
        total += count
        threads[thread] += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return "no samples"
    out = [f"{total} samples"]
    for title, counter in (("threads", threads), ("inclusive", inclusive), ("self", own)):
        out.append(f"\n{title}:")
        out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise a py-spy raw profile.")
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only stacks containing this text")
    args = parser.parse_args()
    print(summarise(args.path, args.top, args.match))


if __name__ == "__main__":
    main()
