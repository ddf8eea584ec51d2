"""Finding and writing files in symbol stores and caches without trusting what is already on disk.

Why these helpers exist rather than plain ``os.path.join`` and ``open``:

- Local stores are looked up case-insensitively (:func:`find_ignoring_case`): Microsoft's server and
  Windows shares ignore case, and a store copied to Linux keeps whatever case it was written with
  (lower-case keys are common).
- Every directory we write to is checked, after resolving symlinks, to be inside the cache
  (:func:`make_key_dir`), so a symlink planted in a cache cannot redirect a write elsewhere.
- Files are written to a temporary file in the destination directory and renamed into place
  (:func:`atomic_write`), so an interrupted run never leaves a truncated PDB that a later run would
  trust.
"""

import errno
import os
import tempfile
from typing import IO, Callable, List, Optional

from pytriage.errors import SymbolError


def find_ignoring_case(parent: str, name: str) -> Optional[str]:
    """``parent/name`` if it exists, else an entry of ``parent`` equal to ``name`` ignoring case."""
    exact = os.path.join(parent, name)
    if os.path.lexists(exact):
        return exact
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return None
    folded = name.casefold()
    for entry in entries:
        if entry.casefold() == folded:
            return os.path.join(parent, entry)
    return None


def is_inside(root: str, path: str) -> bool:
    """True when ``path`` resolves (symlinks followed) to ``root`` or somewhere below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    try:
        return os.path.commonpath([real_root, real]) == real_root
    except ValueError:  # different drives on Windows
        return False


def make_key_dir(cache: str, name: str, key: str) -> str:
    """``cache/name/KEY`` (existing spellings reused), created, and proven to be inside ``cache``."""
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError as exc:
        raise SymbolError("cannot create symbol cache %s: %s" % (cache, describe_os_error(exc)))
    name_dir = find_ignoring_case(cache, name) or os.path.join(cache, name)
    key_dir = (find_ignoring_case(name_dir, key) if os.path.isdir(name_dir) else None) or os.path.join(name_dir, key)
    if not is_inside(cache, key_dir):
        raise SymbolError("refusing to write %s: it resolves outside the symbol cache %s" % (key_dir, cache))
    try:
        os.makedirs(key_dir, exist_ok=True)
    except OSError as exc:
        raise SymbolError("cannot create %s in the symbol cache: %s" % (key_dir, describe_os_error(exc)))
    if not is_inside(cache, key_dir):  # raced with a symlink swap
        raise SymbolError("refusing to write %s: it resolves outside the symbol cache %s" % (key_dir, cache))
    return key_dir


def atomic_write(dest: str, write: Callable[[IO[bytes]], None]) -> None:
    """Run ``write`` on a temporary file beside ``dest`` and rename it into place (or remove it)."""
    fd, tmp = tempfile.mkstemp(prefix=".pytriage-", suffix=".tmp", dir=os.path.dirname(dest))
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        if os.name != "nt":
            # mkstemp makes the file private (0600); a downstream store may be shared with a team,
            # so give the file the permissions any other new file of this user would get.
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def copy_capped(source: str, dest: str, max_bytes: int) -> None:
    """Copy ``source`` to ``dest`` atomically, refusing (and leaving nothing) past ``max_bytes``."""

    def write(out: IO[bytes]) -> None:
        copied = 0
        with open(source, "rb") as fh:
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                copied += len(chunk)
                if copied > max_bytes:
                    raise SymbolError("%s is larger than the %d-byte limit" % (source, max_bytes))
                out.write(chunk)

    atomic_write(dest, write)


def unlink_quietly(path: str) -> None:
    """Remove ``path`` if possible; a file that is already gone or undeletable is not an error here."""
    try:
        os.unlink(path)
    except OSError:
        pass


def describe_os_error(exc: BaseException) -> str:
    """A short description of a socket/OS error (``connection refused``) for one-line messages."""
    text = ""
    if isinstance(exc, OSError):
        text = exc.strerror or (errno.errorcode.get(exc.errno, "") if exc.errno is not None else "")
    text = text or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


_UMASK: List[int] = []


def _umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    if not _UMASK:
        current = os.umask(0o022)
        os.umask(current)
        _UMASK.append(current)
    return _UMASK[0]
