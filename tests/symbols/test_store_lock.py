"""One download per symbol file across processes sharing a cache (pytriage/symbols/store_lock.py).

Several processes (``multiprocessing``, spawned, released together by a barrier) ask a local symbol server
for the same file through the same cache folder. The server answers slowly, so without the lock every process
would be on the wire at once; the tests count the requests server-side. The server serves Microsoft's real
files from the corpus store.
"""

import contextlib
import hashlib
import multiprocessing
import os
import time

from pytriage.errors import SymbolError
from pytriage.symbols import store as store_module
from pytriage.symbols.store import SymbolStore
from pytriage.symbols.store_lock import cache_entry_lock, lock_path_for
from pytriage.symbols.sympath import parse_symbol_path
from tests.symbols.test_store import AMDPPM_GUID, SYMSTORE, StoreServer, files_under

KEY = AMDPPM_GUID + "1"
PROCESSES = 5


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _fetch(sympath, cache, name, guid, barrier, locked, lock_timeout=30.0):
    """In a child process: one lookup through a fresh store; what it found and what it cost."""
    if not locked:         # the race the lock prevents, shown by the control test
        store_module.cache_entry_lock = lambda *args, **kwargs: contextlib.nullcontext()
    store = SymbolStore(parse_symbol_path(sympath, cache), progress=False, backoff=0.01, lock_timeout=lock_timeout)
    barrier.wait()
    try:
        found = store.find_pdb(name, guid, 1)
    except SymbolError as exc:
        return ("error", str(exc))
    return (found, found and sha256(found), store.stats.downloads, store.stats.cache_hits, store.stats.negative_hits)


def _hold(dest, acquired, release):
    """In a child process: hold the cache entry's lock until told to let go."""
    with cache_entry_lock(dest, os.path.basename(dest)):
        acquired.set()
        release.wait(30)


def run_together(count, sympath, cache, name, guid, locked=True):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(count)
    with ctx.Pool(count) as pool:
        results = [pool.apply_async(_fetch, (sympath, cache, name, guid, barrier, locked)) for _ in range(count)]
        return [r.get(60) for r in results]


def test_processes_sharing_a_cache_download_the_file_once(tmp_path):
    server = StoreServer(SYMSTORE)
    server.mode, server.delay = "slow", 1.0
    cache = str(tmp_path / "cache")
    try:
        results = run_together(PROCESSES, "srv*%s*%s" % (cache, server.url), cache, "amdppm.pdb", AMDPPM_GUID)
    finally:
        server.close()
    dest = os.path.join(cache, "amdppm.pdb", KEY, "amdppm.pdb")
    original = sha256(os.path.join(SYMSTORE, "amdppm.pdb", KEY, "amdppm.pdb"))
    assert server.log == ["/amdppm.pdb/%s/amdppm.pdb" % KEY]
    assert sorted(r[2:] for r in results) == [(0, 1, 0)] * (PROCESSES - 1) + [(1, 0, 0)]
    assert [r[:2] for r in results] == [(dest, original)] * PROCESSES
    assert files_under(cache) == ["amdppm.pdb/%s/amdppm.pdb" % KEY]     # no lock file left behind


def test_without_the_lock_the_same_setup_downloads_it_every_time(tmp_path):
    """The control: the setup above really races, so its single request is the lock's doing."""
    server = StoreServer(SYMSTORE)
    server.mode, server.delay = "slow", 1.0
    cache = str(tmp_path / "cache")
    try:
        results = run_together(PROCESSES, "srv*%s*%s" % (cache, server.url), cache, "amdppm.pdb", AMDPPM_GUID,
                               locked=False)
    finally:
        server.close()
    assert server.log == ["/amdppm.pdb/%s/amdppm.pdb" % KEY] * PROCESSES
    assert sorted(r[2:] for r in results) == [(1, 0, 0)] * PROCESSES


def test_a_file_the_server_lacks_is_asked_for_once_and_remembered_by_the_others(tmp_path):
    server = StoreServer(SYMSTORE)
    server.mode, server.delay = "slow", 0.3
    cache = str(tmp_path / "cache")
    guid = "0123456789ABCDEF0123456789ABCDEF"
    try:
        results = run_together(PROCESSES, "srv*%s*%s" % (cache, server.url), cache, "absent.pdb", guid)
    finally:
        server.close()
    key = guid + "1"
    assert server.log == ["/absent.pdb/%s/absent.pdb" % key, "/absent.pdb/%s/absent.pdb" % key.lower(),
                          "/absent.pdb/%s/absent.pd_" % key, "/absent.pdb/%s/file.ptr" % key]
    assert sorted(results) == [(None, None, 0, 0, 0)] + [(None, None, 0, 0, 1)] * (PROCESSES - 1)


def test_a_holder_that_never_finishes_costs_the_timeout_and_one_line(tmp_path):
    server = StoreServer(SYMSTORE)
    cache = str(tmp_path / "cache")
    dest = os.path.join(cache, "amdppm.pdb", KEY, "amdppm.pdb")
    os.makedirs(os.path.dirname(dest))
    ctx = multiprocessing.get_context("spawn")
    acquired, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(dest, acquired, release))
    holder.start()
    try:
        assert acquired.wait(30)
        store = SymbolStore(parse_symbol_path("srv*%s*%s" % (cache, server.url), cache), progress=False,
                            lock_timeout=0.5)
        started = time.monotonic()
        try:
            store.find_pdb("amdppm.pdb", AMDPPM_GUID, 1)
            raise AssertionError("no error while another process held the lock")
        except SymbolError as exc:
            message = str(exc)
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join(30)
        server.close()
    assert message == ("symbol cache: gave up after 0.5s waiting for another process to download amdppm.pdb "
                       "(lock file %s)" % lock_path_for(dest))
    assert 0.5 <= waited < 2.0
    assert server.log == []
    assert holder.exitcode == 0 and not os.path.exists(lock_path_for(dest))


def test_a_lock_file_left_by_a_killed_process_does_not_block(tmp_path):
    """The OS drops a dead process's lock; its file stays, and the next download takes it and removes it."""
    server = StoreServer(SYMSTORE)
    cache = str(tmp_path / "cache")
    dest = os.path.join(cache, "amdppm.pdb", KEY, "amdppm.pdb")
    os.makedirs(os.path.dirname(dest))
    ctx = multiprocessing.get_context("spawn")
    acquired, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(dest, acquired, release))
    holder.start()
    assert acquired.wait(30)
    holder.kill()
    holder.join(30)
    try:
        assert os.path.isfile(lock_path_for(dest))
        store = SymbolStore(parse_symbol_path("srv*%s*%s" % (cache, server.url), cache), progress=False,
                            lock_timeout=5)
        assert store.find_pdb("amdppm.pdb", AMDPPM_GUID, 1) == dest
    finally:
        server.close()
    assert server.log == ["/amdppm.pdb/%s/amdppm.pdb" % KEY]
    assert files_under(cache) == ["amdppm.pdb/%s/amdppm.pdb" % KEY]


def test_a_lock_file_that_cannot_be_created_is_one_line(tmp_path):
    """(A directory in the lock file's place: unlike a read-only folder, it stops root too.)"""
    server = StoreServer(SYMSTORE)
    cache = str(tmp_path / "cache")
    dest = os.path.join(cache, "amdppm.pdb", KEY, "amdppm.pdb")
    os.makedirs(lock_path_for(dest))            # something that is not a file where the lock must go
    try:
        store = SymbolStore(parse_symbol_path("srv*%s*%s" % (cache, server.url), cache), progress=False)
        try:
            store.find_pdb("amdppm.pdb", AMDPPM_GUID, 1)
            raise AssertionError("no error")
        except SymbolError as exc:
            message = str(exc)
    finally:
        server.close()
    assert message == "symbol cache: cannot create the lock file %s: is a directory" % lock_path_for(dest)
    assert server.log == []
