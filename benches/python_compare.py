#!/usr/bin/env python3
"""Python multiprocessing's figures for the keys mproc measures, on this machine, now.

Run by `cargo xtask bench --vs-python`. Prints one JSON object on its last line, with the
same dotted keys as mproc's bench (nested: {"spawn_join_us": {"fork": ...}}).

The script is its own minimal __main__ (spawn and forkserver children re-import the main
module, so a big main would be charged to them), as in shared/bench/python_baseline.py.
"""
import json
import multiprocessing as mp
import sys
import time

pc = time.perf_counter_ns


def noop():
    pass


def med(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def spawn_join_us(method, n, warm=2):
    ctx = mp.get_context(method)
    for _ in range(warm):  # starts the forkserver, warms the page cache
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    ts = []
    for _ in range(n):
        t0 = pc()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        ts.append((pc() - t0) / 1e3)
        assert p.exitcode == 0
    return med(ts)


def main():
    quick = "--quick" in sys.argv
    counts = {"fork": 50 if quick else 150, "forkserver": 30 if quick else 80, "spawn": 10 if quick else 30}
    out = {"spawn_join_us": {m: round(spawn_join_us(m, n), 1) for m, n in counts.items()}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
