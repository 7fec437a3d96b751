#!/bin/sh
# Entrypoint of the slurm-sync image: the first argument picks the role of the container.
#
#   worker-headnode   celery worker on the `headnode` queue, concurrency 1: every task that runs
#                     sacctmgr/sacct (natively, or `docker exec` into $SLURM_CONTAINER_NAME)
#   worker            celery worker on the general `celery` queue (poll_orders)
#   beat              celery beat; its schedule file lives in $SLURM_SYNC_STATE_DIR
#   flower            Flower on port 5555 inside the container; refuses to start without
#                     FLOWER_BASIC_AUTH=user:password (or FLOWER_AUTH for OAuth)
#   load-components   create/update the offering's components (python -m slurm_sync --load-components)
#   anything else     run verbatim, e.g. `slurm-sync check-config`, `celery -A tasks call ...`, `sh`
#
# Arguments after a role are appended to its command (`worker --without-mingle`).
# Settings read here (the application's own variables are read by slurm-sync itself):
#   SLURM_SYNC_LOG_LEVEL            celery/flower log level (default INFO)
#   SLURM_SYNC_WORKER_CONCURRENCY   processes of the general `worker` (default 2; worker-headnode is always 1)
#   SLURM_SYNC_STATE_DIR            writable directory for beat's schedule (default /var/lib/slurm-sync)
set -eu

log_level=${SLURM_SYNC_LOG_LEVEL:-INFO}
state_dir=${SLURM_SYNC_STATE_DIR:-/var/lib/slurm-sync}

die() {
    echo "slurm-sync entrypoint: $*" >&2
    exit 64
}

if [ "$#" -eq 0 ]; then
    set -- worker-headnode
fi
role=$1

case "$role" in
    worker-headnode)
        shift
        exec celery -A tasks worker --queues headnode --concurrency 1 --hostname "headnode@%h" \
            --loglevel "$log_level" "$@"
        ;;
    worker)
        shift
        concurrency=${SLURM_SYNC_WORKER_CONCURRENCY:-2}
        case "$concurrency" in
            '' | *[!0-9]* | 0) die "SLURM_SYNC_WORKER_CONCURRENCY='$concurrency': expected a whole number of at least 1" ;;
        esac
        exec celery -A tasks worker --queues celery --concurrency "$concurrency" --hostname "worker@%h" \
            --loglevel "$log_level" "$@"
        ;;
    beat)
        shift
        mkdir -p "$state_dir" 2>/dev/null || true
        if [ ! -d "$state_dir" ] || [ ! -w "$state_dir" ]; then
            die "SLURM_SYNC_STATE_DIR='$state_dir' is not a writable directory (beat keeps its schedule there: mount a volume)"
        fi
        exec celery -A tasks beat --schedule "$state_dir/celerybeat-schedule" --loglevel "$log_level" "$@"
        ;;
    flower)
        shift
        if [ -z "${FLOWER_BASIC_AUTH:-}" ] && [ -z "${FLOWER_AUTH:-}" ]; then
            die "FLOWER_BASIC_AUTH is not set: Flower shows every task's arguments and can revoke tasks, so it only starts password protected (FLOWER_BASIC_AUTH=user:password)"
        fi
        exec celery -A tasks flower --address=0.0.0.0 --port=5555 --logging="$(echo "$log_level" | tr '[:upper:]' '[:lower:]')" "$@"
        ;;
    load-components)
        shift
        exec python -m slurm_sync --load-components "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
