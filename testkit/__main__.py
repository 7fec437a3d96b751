"""`python -m testkit testbed ...` and `python -m testkit demo ...` (from the repository's top level)."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["testbed"]:
        from testkit.testbed.cli import main as testbed_main
        return testbed_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m testkit", description="slurm-sync's test kit.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("testbed", help="the local SLURM test bed: up | down | status | env")
    demo = sub.add_parser("demo", help="bed + Waldur emulator + worker + beat: a demo order becomes a SLURM account")
    demo.add_argument("--keep-running", action="store_true", help="leave worker, beat and emulator running")
    demo.add_argument("--profile", choices=("current", "7.0"), default="current", help="emulated Waldur generation")
    demo.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    import logging

    from slurm_sync.observability.logs import configure as configure_logging
    from testkit.demo import run_demo
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    return run_demo(keep_running=args.keep_running, profile=args.profile)


if __name__ == "__main__":
    sys.exit(main())
