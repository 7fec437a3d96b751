"""Every Redis key slurm-sync writes, built in this one place.

Keys live under ``slurm-sync:<offering uuid>:``, so deployments of several offerings can share one
Redis (and one db). The one exception is the SLURM write lock: it is ``slurm-sync:lock:slurm-writes``
for every offering, because slurmdbd 22.05 corrupted its tree under concurrent writers here and two
offerings may sell the same cluster; deployments that share a Redis therefore write to SLURM one at
a time.

| key (after the prefix) | TTL | why |
|---|---|---|
| ``lock:poll-orders`` | poll interval x 5 (released at the end) | a poll never overlaps itself |
| ``order-leases`` (sorted set: order uuid -> the time by which a worker must have taken it up) | per member: queued: the visibility timeout; held by a worker: SLURM_SYNC_ORDER_LOCK_TTL, renewed every third of it; deferred: its countdown + that TTL | one chain per order: whoever adds the member (poll, ``ZADD NX``) or takes a lapsed one over (``recover_orders``, one atomic script) sends the one message (tasks/guards.py) |
| ``order:<uuid>:lock`` | SLURM_SYNC_ORDER_LOCK_TTL (40 s), renewed every third of it while its batch runs | two workers never process one order at once; expires so a killed worker's order is picked up again |
| ``node:<worker node name>:holds`` (hash: lock key -> ``<incarnation>|<token>``) | none (entries removed on release) | the locks a worker holds: a worker restarted under the same node name drops its dead incarnation's locks and sends its orders again at once |
| ``order:<uuid>:final`` | 7 days | a re-delivered task or a re-listed order does no second write |
| ``lock:sync-memberships`` | poll interval x 5 | a membership sync never overlaps itself (it writes under the SLURM write lock too) |
| ``lock:report-usage`` | usage interval x 5 | a usage cycle never overlaps itself |
| ``usage:<resource>:<YYYY-MM>`` (hash) | 100 days | the last reported amounts: only changes are posted |
| ``usage-ledger:<YYYY-MM>`` (hash: ``meta``, ``a:<account>`` -> JSON) | 100 days | the month's settled jobs per account and the watermark they are complete up to: a cycle reads only the jobs since (slurm_sync/domain/usage_ledger.py); lost, the month is read whole once |
| ``state:<resource>`` | 100 days | the allocation state last reported (a 7.0-line server does not show it) |
| ``noted:<sha256 of a note, 32 hex>`` | 100 days | a problem said once, not every cycle (a resource whose account is not slurm-sync's) |
| ``last-success:<task>`` | 90 days | when the task last succeeded: health check and metrics |
| ``waldur-generation:<api url>`` | 1 day | the Waldur API generation learnt from the server: every worker agrees, one probe a day |

Correctness never depends on these keys surviving: after a flush the worker re-reads SLURM and the
order's state before every write, so the outcome is the same, only slower.
"""
from __future__ import annotations

from typing import Optional, Tuple

PREFIX = "slurm-sync"
SLURM_WRITES = f"{PREFIX}:lock:slurm-writes"


class RedisKeys:
    """The keys of one deployment (one offering)."""

    def __init__(self, offering_uuid: str):
        self.base = f"{PREFIX}:{offering_uuid or 'no-offering'}:"

    def lock(self, name: str) -> str:
        return f"{self.base}lock:{name}"

    @property
    def slurm_writes(self) -> str:
        """The SLURM write lock: shared by every offering (see the module's text)."""
        return SLURM_WRITES

    def order_leases(self) -> str:
        return f"{self.base}order-leases"

    def order_lock(self, order_uuid: str) -> str:
        return f"{self.base}order:{order_uuid}:lock"

    def order_of_lock(self, key: str) -> Optional[str]:
        """The order uuid of an ``order_lock`` key; None for any other key."""
        head = f"{self.base}order:"
        return key[len(head):-len(":lock")] if key.startswith(head) and key.endswith(":lock") else None

    def order_final(self, order_uuid: str) -> str:
        return f"{self.base}order:{order_uuid}:final"

    def node_holds(self, node: str) -> str:
        return f"{self.base}node:{node}:holds"

    def usage(self, resource: str, month: Tuple[int, int]) -> str:
        return f"{self.base}usage:{resource}:{month[0]}-{month[1]:02d}"

    def usage_pattern(self, resource: Optional[str] = None, month: Optional[Tuple[int, int]] = None) -> str:
        """A SCAN pattern for the usage hashes of one resource, one month, or all."""
        when = f"{month[0]}-{month[1]:02d}" if month else "*"
        return f"{self.base}usage:{resource or '*'}:{when}"

    def usage_ledger(self, month: Tuple[int, int]) -> str:
        return f"{self.base}usage-ledger:{month[0]}-{month[1]:02d}"

    def state(self, resource: str) -> str:
        return f"{self.base}state:{resource}"

    def noted(self, digest: str) -> str:
        return f"{self.base}noted:{digest}"

    def last_success(self, task: str) -> str:
        return f"{self.base}last-success:{task}"

    def waldur_generation(self, api_url: str) -> str:
        return f"{self.base}waldur-generation:{api_url}"
