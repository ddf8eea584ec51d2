"""One download per symbol file across processes: an exclusive lock file next to the cache entry.

Why: a batch triages dumps in several worker processes (and, with Dask, on several machines sharing one cache
folder); dumps from the same Windows build need the same kernel PDB, so on a cold cache every worker would
download the same 30 MB at the same moment. Atomic writes already keep the cache consistent; the lock makes
the download happen once: the first process takes the lock and downloads, the others wait, then find the file
in the cache (the caller re-checks after acquiring) and never ask the server.

How:

- The lock is ``cache/name/KEY/name.lock``, next to the entry it guards, so two different files never wait on
  each other and a user looking at the cache sees what is in progress.
- ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows: the operating system drops the lock when its process
  dies, so a killed worker (a batch timeout) never leaves a lock that blocks the next run. Over NFS and SMB
  these are the share's own locks (Linux maps ``flock`` to NFS byte-range locks).
- The lock file is removed by its holder before it lets go. A waiter that then gets the lock on the removed
  file sees that the path no longer names what it holds and opens the path again, so removing never lets two
  processes hold "the" lock at once. A file left by a killed process is simply taken and removed by the next.
  (Windows cannot remove a file that is open: there the lock file stays, unlocked, and is reused.)
- Waiting polls a non-blocking lock until ``timeout`` seconds have passed, then gives one line that says which
  file and which lock: a hung holder costs its waiters that long, never forever.
"""

import errno
import os
import time
from contextlib import contextmanager
from typing import Iterator

from pytriage.errors import SymbolError
from pytriage.symbols.store_files import describe_os_error

DEFAULT_LOCK_TIMEOUT = 300.0
_POLL_FIRST = 0.02
_POLL_MAX = 0.25

if os.name == "nt":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)   # type: ignore[attr-defined]
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLK):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)       # type: ignore[attr-defined]
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def lock_path_for(dest: str) -> str:
    """The lock file that guards the cache entry ``dest``."""
    return dest + ".lock"


def _still_named(fd: int, path: str) -> bool:
    """True when ``path`` still names the file open as ``fd`` (its holder did not remove it meanwhile)."""
    try:
        named = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


@contextmanager
def cache_entry_lock(dest: str, label: str, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the exclusive lock of the cache entry ``dest`` (``label`` names the file in the error).

    Raises ``SymbolError`` when another process holds it for longer than ``timeout`` seconds, or when the lock
    file cannot be created (a read-only cache)."""
    path = lock_path_for(dest)
    deadline = time.monotonic() + max(0.0, timeout)
    pause = _POLL_FIRST
    fd = -1
    try:
        while True:
            if fd < 0:
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
                except OSError as exc:
                    raise SymbolError("symbol cache: cannot create the lock file %s: %s"
                                      % (path, describe_os_error(exc)))
            try:
                locked = _try_lock(fd)
            except OSError as exc:
                raise SymbolError("symbol cache: cannot lock %s: %s" % (path, describe_os_error(exc)))
            if locked:
                if _still_named(fd, path):
                    break
                os.close(fd)                         # its holder removed it: lock the file the path names now
                fd = -1
                continue
            now = time.monotonic()
            if now >= deadline:
                raise SymbolError("symbol cache: gave up after %gs waiting for another process to download %s "
                                  "(lock file %s)" % (timeout, label, path))
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, _POLL_MAX)
        try:
            yield
        finally:
            try:
                os.unlink(path)                      # while still holding it: see the module docstring
            except OSError:
                pass                                 # Windows cannot remove an open file: it stays, unlocked
            _unlock(fd)
    finally:
        if fd >= 0:
            os.close(fd)
