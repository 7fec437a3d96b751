"""What the bed runs (Spec, persisted in bed.json) and the SLURM config files it renders."""
from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import asdict, dataclass, field

from testkit.testbed.layout import Layout

GPU_COUNT = 2


def short_hostname() -> str:
    return socket.gethostname().split(".")[0]


def node_cpus() -> int:
    return len(os.sched_getaffinity(0))


def node_memory_mb() -> int:
    """RealMemory a little under MemTotal: slurmd drains a node that reports less than configured."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(int(line.split()[1]) / 1024 * 0.95)
    return 1024


@dataclass
class Spec:
    """Everything that identifies one bed; written to bed.json so down/status/env agree with up."""

    cluster: str = "slurmsync"
    host: str = field(default_factory=short_hostname)
    db_host: str = "127.0.0.1"
    db_port: int = 3306
    db_password: str = field(default_factory=lambda: secrets.token_hex(12))
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    # slurmctld, slurmd and slurmdbd listen on port_base, +1, +2: another base lets a
    # throw-away bed (hostile-input tests) run beside the shared one
    slurm_port_base: int = 6817
    # "own" when this bed started the server (and so stops it), "reused" otherwise
    mariadb: str = ""
    redis: str = ""

    @property
    def slurm_ports(self) -> dict[str, int]:
        base = self.slurm_port_base
        return {"slurmctld": base, "slurmd": base + 1, "slurmdbd": base + 2}

    @property
    def db_name(self) -> str:
        return f"slurm_testbed_{self.cluster}"

    @property
    def db_user(self) -> str:
        """One user per cluster: each bed resets its user's password on `up`, and a shared
        user would lock out the slurmdbd of a bed beside it on the same MariaDB."""
        return f"slurm_tb_{self.cluster}"

    @classmethod
    def load(cls, layout: Layout) -> "Spec | None":
        try:
            data = json.loads(layout.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, layout: Layout) -> None:
        tmp = layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.chmod(0o600)  # holds the database password
        tmp.replace(layout.state_file)


def slurm_conf(layout: Layout, spec: Spec) -> str:
    log, sock = layout.log_dir, layout.munge_socket
    return f"""\
# Rendered by python -m testkit testbed; edits are overwritten by the next `up`.
ClusterName={spec.cluster}
SlurmctldHost={spec.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={spec.slurm_ports['slurmdbd']}
SlurmctldPort={spec.slurm_ports['slurmctld']}
SlurmdPort={spec.slurm_ports['slurmd']}
# With munge's socket outside /run/munge, client commands find it only through this.
AccountingStoragePass={sock}
AccountingStorageEnforce=associations,limits
AccountingStorageTRES=gres/gpu
GresTypes=gpu
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
ReturnToService=2
StateSaveLocation={layout.state_dir}
SlurmdSpoolDir={layout.spool_dir}
SlurmctldPidFile={layout.own_pid_file('slurmctld')}
SlurmdPidFile={layout.own_pid_file('slurmd')}
SlurmctldLogFile={log}/slurmctld.log
SlurmdLogFile={log}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName={spec.host} NodeAddr=127.0.0.1 CPUs={node_cpus()} RealMemory={node_memory_mb()} Gres=gpu:{GPU_COUNT} State=UNKNOWN
PartitionName=bed Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def slurmdbd_conf(layout: Layout, spec: Spec) -> str:
    return f"""\
# Rendered by python -m testkit testbed; edits are overwritten by the next `up`.
AuthType=auth/munge
AuthInfo=socket={layout.munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={spec.slurm_ports['slurmdbd']}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost={spec.db_host}
StoragePort={spec.db_port}
StorageUser={spec.db_user}
StoragePass={spec.db_password}
StorageLoc={spec.db_name}
LogFile={layout.log_file('slurmdbd')}
PidFile={layout.own_pid_file('slurmdbd')}
DebugLevel=info
"""


def gres_conf(layout: Layout, spec: Spec) -> str:
    """`Count=` alone registers no GPU and the node goes INVAL; device files are required."""
    return (f"NodeName={spec.host} Name=gpu File={layout.gpu_dir}/gpu[0-{GPU_COUNT - 1}]\n")


def write_all(layout: Layout, spec: Spec) -> None:
    """Render every config file and the fake GPU devices (symlinks to /dev/null)."""
    for i in range(GPU_COUNT):
        dev = layout.gpu_dir / f"gpu{i}"
        if not dev.is_symlink():
            dev.symlink_to("/dev/null")
    layout.slurm_conf.write_text(slurm_conf(layout, spec))
    layout.slurm_conf.chmod(0o644)  # job users read it through SLURM_CONF
    layout.gres_conf.write_text(gres_conf(layout, spec))
    layout.gres_conf.chmod(0o644)
    layout.slurmdbd_conf.write_text(slurmdbd_conf(layout, spec))
    layout.slurmdbd_conf.chmod(0o600)  # slurmdbd refuses a world-readable file with a password
