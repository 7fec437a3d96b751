"""Which generation of the Waldur API a server speaks, learnt from its answers.

Two generations are in the field (shared reference, "Servers in the field differ"):
``current`` (the provider API of python-waldur-client 0.6.4) and ``7.0`` (Waldur
Mastermind 7.0.x: limits, resource state, associations and per-user monthly usage
through ``marketplace-slurm-remote``, and ``set_usage`` that ignores its date).

The version endpoint is staff-only, so the generation is never read from a version
string: an action answering 404 where the current API has it means 7.0. What was
learnt is kept by the client for the process's life (one client per
worker process) and, through a
:class:`GenerationCache` (Redis in the service), shared by every worker for a day.
``WALDUR_API_COMPAT=7.0|current`` forces it.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Optional, Protocol, Tuple

log = logging.getLogger(__name__)

CURRENT = "current"
V7_0 = "7.0"
GENERATIONS = (CURRENT, V7_0)


@dataclass(frozen=True)
class Generation:
    name: str    # current | 7.0
    reason: str  # what answer (or setting) told us

    @property
    def is_7_0(self) -> bool:
        return self.name == V7_0

    @property
    def usage_date_honoured(self) -> bool:
        """False on 7.0: every set_usage is filed under the server's current month."""
        return not self.is_7_0

    def __str__(self) -> str:
        return f"Waldur API generation {self.name} ({self.reason})"


class GenerationCache(Protocol):
    def get(self, api_url: str) -> Optional[Tuple[str, str]]: ...

    def put(self, api_url: str, name: str, reason: str) -> None: ...


class GenerationTracker:
    """The generation for one API URL: forced, cached, or probed once; re-learnt on a telling 404."""

    def __init__(self, api_url: str, forced: str = "auto", cache: Optional[GenerationCache] = None):
        self.api_url = api_url
        self.forced = forced
        self.cache = cache
        self._known: Optional[Generation] = None
        self._lock = threading.RLock()  # intents run on several threads: one probe, not one per thread

    def get(self, probe) -> Generation:
        """``probe()`` -> Generation asks the server; called only when nothing is known."""
        with self._lock:
            if self._known:
                return self._known
            if self.forced in GENERATIONS:
                self._known = Generation(self.forced, "forced by WALDUR_API_COMPAT")
                return self._known
            hit = self.cache.get(self.api_url) if self.cache else None
            if hit:
                self._known = Generation(*hit)
                return self._known
            return self.learn(probe())

    def learn(self, generation: Generation) -> Generation:
        if self.forced in GENERATIONS:
            return self.get(lambda: generation)
        if self._known != generation:
            log.info("%s at %s", generation, self.api_url)
        self._known = generation
        if self.cache:
            self.cache.put(self.api_url, generation.name, generation.reason)
        return generation

