"""`python -m testkit testbed up|down|status|env` (argparse); called as main(argv) by the top-level CLI."""
from __future__ import annotations

import argparse
import sys

from testkit.testbed import bed
from testkit.testbed.errors import TestbedError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testkit testbed",
                                     description="A real SLURM accounting stack on loopback.")
    parser.add_argument("--dir", help="bed directory (default: $SLURM_SYNC_TESTBED_DIR, "
                        "else ~/.cache/slurm-sync/testbed, else /var/tmp/slurm-sync-testbed)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start what is not running (idempotent)")
    up.add_argument("--cluster", help="SLURM cluster name (default: slurmsync)")
    up.add_argument("--db-port", type=int, help="MariaDB port on 127.0.0.1 to reuse or "
                    "start one on (default: 3306)")
    up.add_argument("--redis-port", type=int, help="Redis port on 127.0.0.1 (default: 6379)")
    up.add_argument("--slurm-port-base", type=int, help="slurmctld port; slurmd and slurmdbd "
                    "take the next two (default: 6817). Another base runs a second bed")
    up.add_argument("--no-redis", action="store_true", help="no Redis (the tests start their own); the demo "
                    "wants one for its worker")
    down = sub.add_parser("down", help="stop the daemons this bed started")
    down.add_argument("--purge", action="store_true",
                      help="also drop the bed's accounting database and delete its directory")
    status = sub.add_parser("status", help="state of each daemon; exit 0 only when fully up")
    status.add_argument("--no-redis", action="store_true", help="leave Redis out (neither asked nor needed)")
    sub.add_parser("env", help="print shell exports (eval \"$(python -m testkit testbed env)\")")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            bed.up(args.dir, cluster=args.cluster, db_port=args.db_port,
                   redis_port=args.redis_port, slurm_port_base=args.slurm_port_base, redis=not args.no_redis)
        elif args.command == "down":
            bed.down(args.dir, purge=args.purge)
        elif args.command == "status":
            state = bed.status(args.dir, redis=not args.no_redis)
            for key, value in state.items():
                print(f"{key:10} {value}")
            return 0 if bed.is_up(state) else 3
        else:
            sys.stdout.write(bed.env_exports(bed.env(args.dir)))
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
