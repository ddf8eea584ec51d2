"""The negative cache: remembering, in the symbol cache, that a server did not have a file.

Why: a triage run over a dump asks for every module's PDB and image, and a server has none for most
third-party modules. A 404 (or a ``MSG:`` file.ptr) is remembered on disk for ``ttl`` seconds so that
the next run over the same dump does not ask the server again for the hundred modules it does not
have. The record sits in the key directory the file would have gone to, one JSON file per key, so it
is as easy to inspect or delete as the cache entry itself.
"""

import json
import os
import time
from typing import Dict, Optional

from pytriage.symbols.store_files import atomic_write, find_ignoring_case, make_key_dir

DEFAULT_NEGATIVE_TTL = 24 * 3600.0

#: Marker file (JSON, server URL -> time and reason) recording that a server did not have a file.
NOT_FOUND_MARKER = ".pytriage-notfound"


def remembered_absence(cache: str, name: str, key: str, url: str, ttl: float) -> Optional[str]:
    """The remembered reason ``url`` lacks the file, if remembered less than ``ttl`` seconds ago.

    A ``ttl`` of 0 or less disables the negative cache. An unreadable or malformed marker counts as
    nothing remembered: the worst outcome is one extra request.
    """
    if ttl <= 0:
        return None
    marker = _marker_path(cache, name, key)
    if marker is None or not os.path.isfile(marker):
        return None
    try:
        with open(marker, encoding="utf-8") as fh:
            entry = json.load(fh).get(url)
        age = time.time() - float(entry["time"])
        reason = str(entry.get("reason", "not found"))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if 0 <= age < ttl:
        return reason
    return None


def remember_absence(cache: str, name: str, key: str, url: str, reason: str, ttl: float) -> None:
    """Record that ``url`` lacks ``name``/``key`` (because of ``reason``), keeping other servers' records."""
    if ttl <= 0:
        return
    key_dir = make_key_dir(cache, name, key)
    marker = os.path.join(key_dir, NOT_FOUND_MARKER)
    data: Dict[str, Dict[str, object]] = {}
    try:
        with open(marker, encoding="utf-8") as fh:
            loaded = json.load(fh)
        if isinstance(loaded, dict):
            data = loaded
    except (OSError, ValueError):
        pass
    data[url] = {"time": time.time(), "reason": reason}
    payload = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
    atomic_write(marker, lambda out: out.write(payload))


def _marker_path(cache: str, name: str, key: str) -> Optional[str]:
    """Where the marker for ``name``/``key`` would be, found without creating anything; None if no key dir."""
    name_dir = find_ignoring_case(cache, name)
    if name_dir is None:
        return None
    key_dir = find_ignoring_case(name_dir, key)
    return os.path.join(key_dir, NOT_FOUND_MARKER) if key_dir else None
