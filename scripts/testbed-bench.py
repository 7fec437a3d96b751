#!/usr/bin/env python3
"""Seconds for `python -m testkit testbed up` from nothing (after `down`, and after `down --purge`)
and when already up. Each `up` runs as its own process, as a user or CI would run it.

Usage: PYTHONPATH=. python3 scripts/testbed-bench.py [--dir DIR] [--runs N] [UP-OPTIONS...]
UP-OPTIONS go to every `up`, e.g. `--slurm-port-base 7817 --cluster bench` for a bed beside
the shared one. It takes its bed down: never point it at a bed another session is using.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CLI = [sys.executable, "-m", "testkit.testbed.cli"]


def testbed(args: list[str], bed_dir: str | None) -> float:
    argv = CLI + (["--dir", bed_dir] if bed_dir else []) + args
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="bed directory (default: the testbed default)")
    parser.add_argument("--runs", type=int, default=3)
    args, up_options = parser.parse_known_args()
    up = ["up", *up_options]
    results: dict[str, list[float]] = {"up after down --purge": [], "up after down": [],
                                       "up when already up": []}
    for _ in range(args.runs):
        testbed(["down", "--purge"], args.dir)
        results["up after down --purge"].append(testbed(up, args.dir))
        testbed(["down"], args.dir)
        results["up after down"].append(testbed(up, args.dir))
        results["up when already up"].append(testbed(up, args.dir))
    for label, seconds in results.items():
        runs = " ".join(f"{s:.2f}" for s in seconds)
        print(f"{label:24} median {statistics.median(seconds):6.2f} s   runs: {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
