"""Celery configuration for slurm-sync (worker and beat read it with `celery -A tasks ...`).

Every task that runs sacctmgr/sacct goes to the `headnode` queue, served by the worker that can
reach SLURM; the rest may run on the default `celery` queue anywhere. Tasks are acknowledged
after they run and re-queued when a worker dies, so a killed worker's order is done again
(idempotently) instead of lost.
"""
from slurm_sync.redis_tls import ssl_options
from slurm_sync.settings import env_int, env_setting

# read as the start-up check reads them: a bad value here is the default, and the check stops the process
broker_url = env_setting("CELERY_BROKER_URL")
result_backend = env_setting("CELERY_RESULT_BACKEND") or None
task_ignore_result = result_backend is None
# rediss:// (TLS): verify the server's certificate as redis-py does (kombu alone would not), unless the URL's
# ?ssl_cert_reqs= says otherwise; ?ssl_ca_certs= names a private CA (slurm_sync/redis_tls.py)
broker_use_ssl = ssl_options(broker_url) or False
redis_backend_use_ssl = ssl_options(result_backend or "")

task_routes = {
    "tasks.pull.process_orders": {"queue": "headnode"},
    "tasks.pull.process_order": {"queue": "headnode"},
    "tasks.pull.sync_memberships": {"queue": "headnode"},
    "tasks.push.*": {"queue": "headnode"},
}
task_default_queue = "celery"

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True
broker_connection_retry_on_startup = True
# Redis redelivers a task left unacknowledged (its worker died) after visibility_timeout, which must
# be longer than any task runs; workers sweep for such tasks every interval x throttle seconds.
broker_transport_options = {
    "visibility_timeout": env_int("SLURM_SYNC_VISIBILITY_TIMEOUT"),
    "unacked_restore_interval": env_int("SLURM_SYNC_RESTORE_INTERVAL"),
    "unacked_restore_throttle": env_int("SLURM_SYNC_RESTORE_THROTTLE"),
}
worker_send_task_events = True
task_send_sent_event = True
