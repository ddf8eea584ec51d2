"""One guard for the singly linked chains a walk follows (NBLs, NET_BUFFERs, MDLs).

A crashed machine's chains can loop or run on through garbage; every loop that follows a ``Next``
asks the guard first, so the three walks stop the same way: at the first address seen before (with
where it was first seen) or at the limit.
"""

from typing import Dict, Optional, Tuple


class ChainGuard:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: Dict[int, int] = {}

    def stop(self, address: int) -> Optional[Tuple[str, int]]:
        """``("loop", index first seen)``, ``("limit", limit)``, or None after recording ``address``."""
        if address in self._seen:
            return "loop", self._seen[address]
        if len(self._seen) >= self.limit:
            return "limit", self.limit
        self._seen[address] = len(self._seen)
        return None
