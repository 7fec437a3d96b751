#!/bin/sh
# Starts the head node's daemons in order (munged, slurmdbd, the cluster's registration, slurmctld) and
# stays in the foreground with slurmctld. Settings (environment): CLUSTER, DB_HOST, DB_PORT, DB_USER,
# DB_PASSWORD, DB_NAME, PORT_BASE (slurmctld; slurmdbd listens on PORT_BASE+2).
set -eu
: "${CLUSTER:?}" "${DB_USER:?}" "${DB_PASSWORD:?}" "${DB_NAME:?}" "${PORT_BASE:?}"
host=$(hostname -s)
mkdir -p /etc/slurm /run/munge /var/lib/munge /var/log/munge /var/log/slurm /var/spool/slurmctld
chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
[ -f /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
runuser -u munge -- munged

cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT_BASE + 2))
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=${DB_HOST:-127.0.0.1}
StoragePort=${DB_PORT:-3306}
StorageUser=$DB_USER
StoragePass=$DB_PASSWORD
StorageLoc=$DB_NAME
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
CONF
chmod 0600 /etc/slurm/slurmdbd.conf

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT_BASE
SlurmdPort=$((PORT_BASE + 1))
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT_BASE + 2))
AccountingStorageEnforce=associations,limits
AccountingStorageTRES=gres/gpu
GresTypes=gpu
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=/var/spool/slurmctld
SlurmctldPidFile=/run/slurmctld.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=1 RealMemory=1000 State=FUTURE
PartitionName=head Nodes=ALL Default=YES State=UP
CONF

slurmdbd
tries=0
until sacctmgr -n show cluster >/dev/null 2>&1; do
    tries=$((tries + 1)); [ "$tries" -lt 60 ] || { cat /var/log/slurm/slurmdbd.log >&2; exit 1; }
    sleep 0.5
done
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
exec slurmctld -D
