"""What was last reported to Waldur per resource and month, so a cycle posts only what changed."""
from __future__ import annotations

from typing import Dict, Optional, Protocol, Tuple

Month = Tuple[int, int]


class ReportedStore(Protocol):
    """The last amounts reported per (resource, month): {type: "1.23"} and {user: {type: "1.23"}}."""

    def get(self, resource: str, month: Month) -> Tuple[Dict[str, str], Dict[str, Dict[str, str]]]: ...

    def put(self, resource: str, month: Month, totals: Dict[str, str], users: Dict[str, Dict[str, str]]) -> None: ...

    def forget(self, resource: Optional[str] = None, month: Optional[Month] = None) -> None: ...

    def state(self, resource: str) -> Optional[str]:
        """The allocation state last reported (OK | Erred): a 7.0-line server does not show it."""

    def put_state(self, resource: str, state: str) -> None: ...

    def first_time(self, note: str) -> bool:
        """True the first time ``note`` is offered (within the store's memory): what is said once."""
