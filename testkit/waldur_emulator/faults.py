"""Fault injection: fail some calls with a status, fail a random share, drop connections, add latency.

A fault strikes before the call is handled, or ``after`` it (the server did the work and the answer is
lost: a proxy's 502/504 after the application committed, a connection dropped on the way back), which
is what makes a client's retry meet the state its first try already reached.
"""
from dataclasses import dataclass
import random
import threading


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self.clear()

    def clear(self):
        with self._lock:
            self._next = []      # [remaining, status, path_contains, after]
            self._rates = []     # (rate, status, path_contains, after); status None: drop the connection
            self._latency = []   # (seconds, path_contains)
            self._random = random.Random(0)

    def fail_next(self, n, status=503, path_contains=None, after=False, retry_after=None):
        """Answer the next ``n`` matching calls with ``status`` (rules queue up); ``after``: once handled;
        ``retry_after``: seconds sent in a Retry-After header (a 429 or 503 of a server asking to slow down)."""
        with self._lock:
            self._next.append([int(n), int(status), path_contains, bool(after), retry_after])

    def fail_rate(self, rate, status=500, path_contains=None, seed=None, after=False):
        """Answer a random share ``rate`` (0..1) of matching calls with ``status`` (``after``: once handled);
        reproducible: the random generator is seeded (0 unless ``seed``)."""
        with self._lock:
            self._rates.append((float(rate), int(status), path_contains, bool(after)))
            if seed is not None:
                self._random.seed(seed)

    def drop_rate(self, rate, path_contains=None, after=True, seed=None):
        """Close the connection with no answer on a random share ``rate`` of matching calls, by default
        after handling them (the client cannot know whether the work was done)."""
        with self._lock:
            self._rates.append((float(rate), None, path_contains, bool(after)))
            if seed is not None:
                self._random.seed(seed)

    def latency(self, seconds, path_contains=None):
        """Delay every matching call by ``seconds`` before answering."""
        with self._lock:
            self._latency.append((float(seconds), path_contains))

    @staticmethod
    def _matches(path, path_contains):
        return path_contains is None or path_contains in path

    def decide(self, path):
        """The :class:`Decision` for one incoming call."""
        with self._lock:
            delay = sum(s for s, where in self._latency if self._matches(path, where))
            for rule in self._next:
                if rule[0] > 0 and self._matches(path, rule[2]):
                    rule[0] -= 1
                    return Decision(delay, rule[1], rule[3], retry_after=rule[4])
            for rate, status, where, after in self._rates:
                if self._matches(path, where) and self._random.random() < rate:
                    return Decision(delay, status, after, drop=status is None)
            return Decision(delay)


@dataclass(frozen=True)
class Decision:
    delay: float = 0.0
    status: "int | None" = None  # answer with this instead of the real answer
    after: bool = False  # the call is handled first (its work is done), then the fault strikes
    drop: bool = False  # close the connection with no answer
    retry_after: "float | None" = None  # seconds, sent as Retry-After with the injected status

    @property
    def fails(self) -> bool:
        return self.drop or self.status is not None
