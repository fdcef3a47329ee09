"""Where the time goes: the top entries of a py-spy raw profile (`py-spy record -f raw`, with
`--gil` for where the CPU goes), as shares of the samples that were doing work (threads waiting
idle are left out), by function (self and inclusive) and, for our own code, by module.

    make profile                     # py-spy over bench/order_pipeline.py, then this summary
    .venv/bin/python bench/profile_top.py profile.txt [--top 25]
"""

from __future__ import annotations

import argparse
import collections

# leaf frames of threads that are waiting, not working
IDLE = ("_worker (concurrent/futures/thread.py", "Condition.wait (threading.py", "select (selectors.py",
        "EpollSelector.select", "_run_once (asyncio/base_events.py")
OURS = ("activities/", "api/", "workflows/", "integrations/", "db/", "domain/", "sandbox/", "cli/",
        "worker.py", "settings.py")


def frame_name(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0]})" if where else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    own, inclusive, modules = collections.Counter(), collections.Counter(), collections.Counter()
    busy = waiting = 0
    for line in open(args.raw, encoding="utf-8"):
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        frames, n = stack.split(";"), int(count)
        if frames[-1].startswith(IDLE) or any(frames[-1].startswith(i.split(" (")[0] + " (") and i in frames[-1]
                                               for i in IDLE):
            waiting += n
            continue
        busy += n
        own[frame_name(frames[-1])] += n
        for name in {frame_name(f) for f in frames}:
            inclusive[name] += n
        for module in {f.split(" (")[1].split(":")[0] for f in frames if " (" in f
                       and f.split(" (")[1].startswith(OURS)}:
            modules[module] += n
    print(f"{busy} busy samples ({waiting} idle left out)")
    for title, counter in (("self", own), ("inclusive", inclusive), ("our modules, inclusive", modules)):
        print(f"\n-- {title}")
        for name, n in counter.most_common(args.top):
            print(f"{100 * n / busy:5.1f}%  {name}")


if __name__ == "__main__":
    main()
