"""A dump's identity is its content: the SHA-256 of the whole file.

The same crash reaches a support team under several names (re-uploaded, copied into two case folders,
renamed by a ticket system); results keyed by content triage it once, and a renamed or moved dump is not
triaged again. Hashing reads the whole file, which costs about as much as a triage for large dumps, so
the store caches the hash by (path, size, mtime_ns) and a re-run does not re-read unchanged files.

``hashlib`` releases the GIL while it hashes a chunk, so a thread pool hashes several files in parallel.
"""

import hashlib
import os
import threading
from typing import Optional, Tuple

CHUNK = 1 << 20


class HashCancelled(Exception):
    """Hashing stopped because the batch is being interrupted."""


def file_key(path: str) -> Tuple[int, int]:
    """(size, mtime_ns): what must be unchanged for a cached hash of ``path`` to still hold."""
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def content_hash(path: str, cancel: Optional[threading.Event] = None) -> str:
    """SHA-256 hex digest of the whole file, read in 1 MB chunks; ``cancel`` set -> ``HashCancelled``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            if cancel is not None and cancel.is_set():
                raise HashCancelled(path)
            chunk = fh.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()
