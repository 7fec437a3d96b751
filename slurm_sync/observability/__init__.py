"""Operating slurm-sync: Sentry, Prometheus metrics, structured logs and secret redaction.

- :mod:`.redaction` finds the secrets of this deployment (the Waldur token) and blanks them in text;
- :mod:`.sentry` starts sentry-sdk (Celery + logging integrations) with scrubbing hooks;
- :mod:`.metrics` the Prometheus metrics, their multiprocess set-up and the HTTP endpoint;
- :mod:`.logs` the text/JSON log formats and the redacting filter.

Nothing here imports Celery; ``tasks/signals.py`` wires these into the worker and beat.
"""
