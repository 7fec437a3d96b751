"""`slurm-sync adopt [--apply]`: take over the SLURM accounts waldur-site-agent (or an older slurm-sync) made.

One listing of the offering's live resources, one read of the tree, one verdict per resource
(:mod:`slurm_sync.domain.adopt`). A dry run (the default) prints the verdicts and the one ``sacctmgr load``
that ``--apply`` would run; ``--apply`` runs it. It writes Descriptions only: no limit, user, DefaultAccount,
QoS, Organization or job is touched, and a second run finds nothing to write.
"""
from __future__ import annotations

import shlex
import sys
from typing import Optional, TextIO

from slurm_sync.domain.adopt import ADOPTED, OURS, REFUSED, Adoption, Resource, plan_adoption
from slurm_sync.domain.real_tree import ActualState
from slurm_sync.domain.slurm_objects import MarkAccounts


def print_verdicts(adoption: Adoption, out: TextIO) -> None:
    for verdict in adoption.verdicts:
        what = f": {verdict.why}" if verdict.why else ""
        print(f"{verdict.status} {verdict.resource_uuid} {verdict.account or '-'}{what}", file=out)
        for argv in verdict.commands:
            print(f"    {shlex.join(argv)}", file=out)
    print(f"# {len(adoption.verdicts)} resource(s): {adoption.count(ADOPTED)} adopted, {adoption.count(OURS)} "
          f"already ours, {adoption.count(REFUSED)} refused; {len(adoption.marks)} Description(s) to write",
          file=out)


def adopt(waldur, slurm, policy, apply: bool, out: TextIO = sys.stdout) -> Adoption:
    """Prove, print, and (with ``apply``) write every mark in one sacctmgr ``load``."""
    from slurm_sync.cli.plan import RecordingExecutor
    from slurm_sync.slurm.sacctmgr import SacctmgrClient

    resources = [Resource.from_waldur(row) for row in waldur.live_resources()]
    adoption = plan_adoption(resources, ActualState(slurm.read_associations()), policy)
    print_verdicts(adoption, out)
    if not adoption.marks:
        print("# nothing to write", file=out)
        return adoption
    operation = MarkAccounts(tuple((account, parent, mark) for account, (parent, mark) in adoption.marks.items()))
    if apply:
        report = slurm.apply([operation])
        print(f"# wrote {len(adoption.marks)} Description(s): {report.commits} commit(s) in {report.seconds:.1f} s",
              file=out)
        return adoption
    recorder = RecordingExecutor(slurm.executor)
    SacctmgrClient(recorder, timeout=slurm.timeout, cluster=slurm.cluster).apply([operation])
    print("# --apply would run:", file=out)
    for argv, stdin in recorder.recorded:
        print(shlex.join(argv) + " <<'EOF'\n" + (stdin or "").rstrip("\n") + "\nEOF", file=out)
    return adoption


def main(apply: bool, out: TextIO = sys.stdout, env: Optional[dict] = None) -> int:
    from slurm_sync.settings import load_settings
    from slurm_sync.wiring import naming_policy, sacctmgr, slurm_runner, waldur_api

    settings = load_settings(env)
    adoption = adopt(waldur_api(settings), sacctmgr(settings, slurm_runner(settings)), naming_policy(settings),
                     apply, out)
    return 1 if adoption.count(REFUSED) else 0
