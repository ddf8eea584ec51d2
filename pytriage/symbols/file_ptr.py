"""``file.ptr``: a store entry that holds, instead of the file, a pointer to it or a message.

A build lab's store may file ``name/KEY/file.ptr`` holding ``PATH:<where the file is>`` or
``MSG:<why there is no file>`` (withdrawn, never published ...). The pointer text comes from a store
or a server we do not control, so it is treated like any other untrusted input: only absolute local or
UNC paths to readable files are followed, and the target's name never decides where anything is
written (the caller copies it under the name it asked for).
"""

import os
from typing import List, Optional, Tuple

from pytriage.errors import SymbolError

#: A ``file.ptr`` is one short line; anything longer is not one.
MAX_PTR_BYTES = 64 * 1024


def read_ptr_file(path: str) -> bytes:
    """The start of a local ``file.ptr`` (at most :data:`MAX_PTR_BYTES`, enough for any real one)."""
    with open(path, "rb") as fh:
        return fh.read(MAX_PTR_BYTES)


def parse_ptr(body: bytes) -> Tuple[str, str]:
    """``("PATH", path)``, ``("MSG", text)`` or ``("BAD", description)`` from a file.ptr body."""
    text = body.decode("utf-8", "replace").strip()
    if "\n" in text:
        text = text.splitlines()[0].strip()
    if text[:5].upper() == "PATH:":
        return "PATH", text[5:].strip()
    if text[:4].upper() == "MSG:":
        message = "".join(ch if ch.isprintable() else "?" for ch in text[4:].strip())
        return "MSG", message[:200]
    return "BAD", "file.ptr holds neither PATH: nor MSG: (%r)" % text[:40]


def follow_ptr(body: bytes, where: str, name: str, max_bytes: int, messages: List[str]) -> Optional[str]:
    """The readable regular file a ``PATH:`` file.ptr names, or None (with a line added to ``messages``).

    ``where`` (the file.ptr's path or the server's URL) and ``name`` only label the message. Only
    absolute local or UNC paths are followed, only to files this user can read; a target over
    ``max_bytes`` is an error rather than a message, as it would be for the file itself.
    """
    kind, value = parse_ptr(body)
    problem = None
    if kind != "PATH":
        problem = value
    elif "://" in value:
        problem = "file.ptr points to %r, only local paths are followed" % value
    elif not (os.path.isabs(value) or value.startswith("\\\\")):
        # Relative to what? The store, the server, our working directory: each guess could pick a
        # different file, so a relative pointer is not followed at all.
        problem = "file.ptr points to %r, a relative path (not followed)" % value
    elif not os.path.isfile(value) or not os.access(value, os.R_OK):
        problem = "file.ptr points to %r, which is not a readable file" % value
    if problem is not None:
        messages.append("%s: %s: %s" % (name, where, problem))
        return None
    if os.path.getsize(value) > max_bytes:
        raise SymbolError("%s: file.ptr target %s is larger than the %d-byte limit" % (name, value, max_bytes))
    return value
