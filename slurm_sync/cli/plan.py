"""`slurm-sync plan`: the exact sacctmgr commands the active orders would run, applying nothing.

The real SacctmgrClient renders the plan; a recording executor lets its reads through and
captures its writes instead of running them, so what is printed is what `apply` would run.
"""
from __future__ import annotations

import shlex
import sys
from typing import List, Optional, Sequence, Set, Tuple

from slurm_sync.slurm.runner import CommandResult, NativeExecutor

READ_WORDS = {"show", "list"}


def is_read(argv: Sequence[str]) -> bool:
    """sacct and squeue only read; a sacctmgr command reads when it is not ``-i`` and its verb (the first word,
    not any word: a user may be called ``list``) is show or list."""
    if not argv:
        return False
    if argv[0] in ("sacct", "squeue"):
        return True
    words = [arg for arg in argv[1:] if not arg.startswith("-")]
    return argv[0] == "sacctmgr" and "-i" not in argv and bool(words) and words[0] in READ_WORDS


class RecordingExecutor(NativeExecutor):
    """Runs reads through ``inner``; records every other command (and its stdin) without running it. A job a
    recorded ``scancel`` names is gone from later ``squeue`` answers, as it would be: the plan shows the scancel
    and goes on instead of waiting for jobs nothing cancels."""

    def __init__(self, inner: NativeExecutor):
        super().__init__(inner.timeout)
        self.inner = inner
        self.recorded: List[Tuple[List[str], Optional[str]]] = []
        self.cancelled: Set[str] = set()

    def wrap(self, argv: Sequence[str]) -> List[str]:
        return self.inner.wrap(argv)

    def run(self, argv: Sequence[str], *, timeout: Optional[float] = None, input: Optional[str] = None,
            check: bool = True) -> CommandResult:
        if is_read(argv):
            result = self.inner.run(argv, timeout=timeout, input=input, check=check)
            if argv[0] == "squeue" and self.cancelled:
                kept = [line for line in result.stdout.splitlines() if line.strip() not in self.cancelled]
                result = CommandResult(result.returncode, "".join(line + "\n" for line in kept), result.stderr)
            return result
        self.recorded.append((self.wrap(argv), input))
        if argv and argv[0] == "scancel":
            self.cancelled.update(arg for arg in argv[1:] if not arg.startswith("-"))
        return CommandResult(0, "", "")


def print_plan(out=sys.stdout) -> int:
    from slurm_sync.slurm.sacctmgr import SacctmgrClient
    from slurm_sync.sync.pull import OrderProcessor
    from slurm_sync.wiring import build_runtime  # the same wiring as the worker

    rt = build_runtime()
    orders = rt.waldur.active_orders()
    recorder = RecordingExecutor(rt.executor)
    processor = OrderProcessor(rt.waldur, SacctmgrClient(recorder, timeout=rt.settings.slurm_command_timeout),
                               rt.components, rt.policy)
    plan = processor.plan(orders)
    print(f"# {len(orders)} active order(s) of offering {rt.settings.waldur_offering_uuid}", file=out)
    for uuid, account in plan.accounts.items():
        print(f"# order {uuid} -> account {account}", file=out)
    for uuid, message in plan.errors.items():
        print(f"# order {uuid} would be erred: {message}", file=out)
    if plan.empty:
        print("# nothing to change in SLURM", file=out)
        return 0
    processor.slurm.apply(plan.operations)
    for argv, stdin in recorder.recorded:
        print(shlex.join(argv), file=out)
        if stdin:
            print("  <<'EOF'\n" + stdin.rstrip("\n") + "\nEOF", file=out)
    return 0
