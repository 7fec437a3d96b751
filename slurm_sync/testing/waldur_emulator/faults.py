"""Fault injection: fail some calls with a status, fail a random share, add latency."""
import random
import threading


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self.clear()

    def clear(self):
        with self._lock:
            self._next = []      # [remaining, status, path_contains]
            self._rates = []     # (rate, status, path_contains)
            self._latency = []   # (seconds, path_contains)
            self._random = random.Random(0)

    def fail_next(self, n, status=503, path_contains=None):
        """Answer the next ``n`` matching calls with ``status`` (rules queue up)."""
        with self._lock:
            self._next.append([int(n), int(status), path_contains])

    def fail_rate(self, rate, status=500, path_contains=None, seed=None):
        """Answer a random share ``rate`` (0..1) of matching calls with ``status``;
        reproducible: the random generator is seeded (0 unless ``seed``)."""
        with self._lock:
            self._rates.append((float(rate), int(status), path_contains))
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
        """(delay in seconds, status to fail with or None) for one incoming call."""
        with self._lock:
            delay = sum(s for s, where in self._latency if self._matches(path, where))
            for rule in self._next:
                if rule[0] > 0 and self._matches(path, rule[2]):
                    rule[0] -= 1
                    return delay, rule[1]
            for rate, status, where in self._rates:
                if self._matches(path, where) and self._random.random() < rate:
                    return delay, status
            return delay, None
