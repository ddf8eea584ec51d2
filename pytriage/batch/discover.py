"""Find the kernel dumps under a folder: by their signature, never by their name.

Dumps reach support teams renamed (``case-4711.bin``, ``MEMORY.DMP.1``, no extension at all) next to logs,
archives and screenshots, so the extension says nothing; the first 8 bytes do (``PAGEDU64`` for a 64-bit
kernel dump, ``PAGEDUMP`` for a 32-bit one). Everything else is reported as skipped with its reason, so the
user sees why a file was left out.

The walk follows symbolic links to folders (a case folder often links shared dumps in) but visits each real
folder once, so a link back up the tree cannot loop. Entries are visited in sorted order so two runs over the
same tree list the same dumps in the same order (sorted by path).
"""

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from typing import List, Sequence, Set, Tuple

SIGNATURES = (b"PAGEDU64", b"PAGEDUMP")


@dataclass
class DiscoveryResult:
    dumps: List[str] = field(default_factory=list)                    # absolute paths, sorted
    skipped: List[Tuple[str, str]] = field(default_factory=list)      # (absolute path, one-line reason)


def _show_signature(magic: bytes) -> str:
    """The first 4 bytes as a quoted string a user can compare with a hex dump: 'MDMP', '\\x00\\x00PK'."""
    text = repr(magic[:4])
    return text[1:] if text.startswith("b") else text


def classify(path: str) -> str:
    """"" when ``path`` is a kernel dump, else the one-line reason it is not."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return "unreadable: %s" % (exc.strerror or exc)
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size == 0:
        return "empty file"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
    except OSError as exc:
        return "unreadable: %s" % (exc.strerror or exc)
    if magic in SIGNATURES:
        return ""
    if magic[:4] == b"MDMP":
        return "user-mode minidump (signature 'MDMP'), not a kernel dump"
    if len(magic) < 8:
        return "not a kernel dump (%d bytes)" % len(magic)
    return "not a kernel dump (signature %s)" % _show_signature(magic)


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:          # undecodable bytes in a POSIX file name (surrogate escapes)
        return False
    return True


def _excluded(rel: str, name: str, exclude: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(name, pattern) for pattern in exclude)


def find_dumps(root: str, exclude: Sequence[str] = ()) -> DiscoveryResult:
    """Walk ``root`` recursively; keep files whose first 8 bytes are a kernel dump signature.

    ``exclude``: glob patterns matched against a path relative to ``root`` (``/`` separators) and against the
    bare name; a matching folder is not entered, a matching file is neither a dump nor listed as skipped.
    """
    root = os.path.abspath(root)
    result = DiscoveryResult()
    seen: Set[Tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True, onerror=lambda exc: result.skipped.append(
            (os.path.abspath(exc.filename or root), "unreadable folder: %s" % (exc.strerror or exc)))):
        try:
            real = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (real.st_dev, real.st_ino) in seen:       # a link back to a folder already walked
            dirs[:] = []
            continue
        seen.add((real.st_dev, real.st_ino))
        rel_folder = os.path.relpath(folder, root)
        rel_folder = "" if rel_folder == "." else rel_folder.replace(os.sep, "/") + "/"
        dirs[:] = sorted(d for d in dirs if not _excluded(rel_folder + d, d, exclude))
        for name in sorted(files):
            if _excluded(rel_folder + name, name, exclude):
                continue
            path = os.path.join(folder, name)
            reason = classify(path)
            if not reason and not _utf8(path):
                reason = "kernel dump, but its path is not valid UTF-8 (the results database stores UTF-8): rename it"
            if reason:
                result.skipped.append((path, reason))
            else:
                result.dumps.append(path)
    result.dumps.sort()
    result.skipped.sort()
    return result
