"""The per-dump task: triage one dump in a worker process, within a time budget and a memory cap.

``run_dump(path, options)`` is the one task every runner uses: the local runner (one thread per job, each
thread driving its own worker process) and Dask workers (``dask_runner``). It never raises for a bad dump: it
returns the row to store, with one of four statuses:

- ``ok``: the triage record and the columns grouping needs (bugcheck, buckets, culprit);
- ``error``: the dump could not be triaged (truncated, corrupt, not x64): the one-line error, plus the
  bugcheck and crash time when the header still gives them;
- ``timeout``: no answer within ``options.timeout`` seconds: the worker was killed (and is restarted for the
  next dump), because a triage that loops on a corrupt structure must not hold a job forever;
- ``crashed``: the worker process died (a C extension fault, the OOM killer): its exit code or signal.

Worker processes (``python -m pytriage.batch.child``) are reused across dumps: starting Python and importing
the triage costs more than triaging a small dump. ``options.child_argv`` names the worker command (tests point
it at a wrapper module that makes some dumps hang or crash).
"""

import atexit
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from pytriage.errors import PytriageError

DEFAULT_CHILD_MODULE = "pytriage.batch.child"
HELLO_TIMEOUT = 60.0          # seconds a new worker may take to import the triage and say hello
CLOSE_GRACE = 5.0             # seconds a worker gets to exit after its input is closed


def default_child_argv() -> List[str]:
    return [sys.executable, "-m", DEFAULT_CHILD_MODULE]


@dataclass
class TaskOptions:
    """How each dump is triaged; picklable, so Dask can ship it to its workers."""

    symbols: Optional[str] = None          # symbol path (WinDbg syntax); None: _NT_SYMBOL_PATH, else local cache
    timeout: float = 300.0                 # seconds per dump before the worker is killed
    memory_mb: int = 4096                  # address-space cap beyond the dump's size (POSIX RLIMIT_AS); 0: none
    engine: str = "offline"                # "offline" (pytriage's reader) or "dbgeng" (pybag, Windows)
    child_argv: List[str] = field(default_factory=default_child_argv)


class WorkerError(Exception):
    """The worker process could not be started or did not answer as the protocol says."""


class _Timeout(Exception):
    pass


class _Died(Exception):
    pass


def _format_seconds(value: float) -> str:
    return "%g" % value


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


def _child_env() -> Dict[str, str]:
    """The parent's environment, with this pytriage importable even when it is not installed."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def result_from_record(record: dict, seconds: float, engine: str) -> Dict[str, object]:
    """The ``results`` columns (all but the key) of a successful triage."""
    culprit = record.get("culprit") or {}
    buckets = record.get("buckets") or {}
    bugcheck = record.get("bugcheck") or {}
    return {"status": "ok", "error": None, "seconds": seconds, "triaged_at": time.time(), "engine": engine,
            "dump_time": (record.get("dump") or {}).get("crash_time"),
            "bugcheck_code": bugcheck.get("code"), "bugcheck_name": bugcheck.get("name"),
            "failure_bucket": buckets.get("failure_bucket_id"), "network_bucket": buckets.get("network_bucket_id"),
            "culprit": culprit.get("binary"), "culprit_class": culprit.get("class"),
            "culprit_confidence": culprit.get("confidence"), "culprit_timestamp": culprit.get("timestamp"),
            "culprit_role": culprit.get("role"), "record": json.dumps(record, ensure_ascii=True)}


def failure_result(status: str, error: str, seconds: float, engine: str,
                   facts: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """The ``results`` columns of a dump that gave no record; ``facts``: what its header still tells."""
    facts = facts or {}
    return {"status": status, "error": error, "seconds": seconds, "triaged_at": time.time(), "engine": engine,
            "dump_time": facts.get("dump_time"), "bugcheck_code": facts.get("bugcheck_code"),
            "bugcheck_name": facts.get("bugcheck_name"), "failure_bucket": None, "network_bucket": None,
            "culprit": None, "culprit_class": None, "culprit_confidence": None, "culprit_timestamp": None,
            "culprit_role": None, "record": None}


def _header_facts(path: str) -> Dict[str, object]:
    from pytriage.batch.child import header_facts
    try:
        return header_facts(path)
    except Exception:        # the header of a dump that killed its worker: facts are a bonus, never a failure
        return {}


class ChildWorker:
    """One worker process, started on first use, restarted after a timeout or a crash."""

    def __init__(self, options: TaskOptions) -> None:
        self.options = options
        self.proc: Optional[subprocess.Popen] = None
        self.replies: queue.Queue = queue.Queue()          # lines from the worker; None at its end
        self.stderr = None
        self.closed = False
        self.starts = 0
        self._lock = threading.Lock()

    # -- process ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker and wait for its hello line; ``WorkerError`` when it does not come."""
        with self._lock:
            if self.closed:
                raise WorkerError("the batch is stopping")
            self.stderr = tempfile.TemporaryFile()
            try:
                proc = subprocess.Popen(list(self.options.child_argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, env=_child_env())
            except OSError as exc:
                raise WorkerError("cannot start the worker %s: %s" % (self.options.child_argv[0],
                                                                      exc.strerror or exc)) from None
            self.proc = proc
            self.replies = queue.Queue()
            self.starts += 1
        threading.Thread(target=self._read, args=(proc, self.replies), daemon=True,
                         name="pytriage-worker-%d" % proc.pid).start()
        try:
            hello = self._reply(HELLO_TIMEOUT)
        except (_Timeout, _Died) as exc:
            self.kill_process()
            raise WorkerError("the worker did not start: %s" % exc) from None
        if hello.get("hello") != "pytriage.batch.child/1":
            self.kill_process()
            raise WorkerError("the worker did not speak pytriage.batch.child/1 (said %r)" % (hello,))

    @staticmethod
    def _read(proc: subprocess.Popen, replies: queue.Queue) -> None:
        try:
            for line in proc.stdout:
                replies.put(line)
        except (OSError, ValueError):
            pass
        replies.put(None)

    def _stderr_tail(self, since: int = 0) -> str:
        if self.stderr is None:
            return ""
        try:
            self.stderr.seek(since)
            text = self.stderr.read()[-8192:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:200] if lines else ""

    def _stderr_size(self) -> int:
        try:
            return os.fstat(self.stderr.fileno()).st_size if self.stderr is not None else 0
        except (OSError, ValueError):
            return 0

    def _death(self, since: int = 0) -> str:
        proc = self.proc
        code = proc.wait() if proc is not None else None
        if code is None:
            text = "worker process died"
        elif code < 0:
            text = "worker process died: killed by %s" % _signal_name(-code)
        else:
            text = "worker process died: exit code %d" % code
        tail = self._stderr_tail(since)
        return text + ("; last output: %s" % tail if tail else "")

    def _reply(self, timeout: float, since: int = 0) -> dict:
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise _Timeout() from None
        if line is None:
            text = self._death(since)
            self._forget()
            raise _Died(text)
        try:
            reply = json.loads(line.decode("utf-8"))
        except ValueError:
            raise _Died("worker wrote something that is not a protocol line: %r" % line[:100]) from None
        if not isinstance(reply, dict):
            raise _Died("worker wrote a protocol line that is not an object: %r" % line[:100])
        return reply

    def _forget(self) -> None:
        if self.stderr is not None:
            self.stderr.close()
        self.proc, self.stderr = None, None

    def kill_process(self) -> None:
        """Kill the current worker process (it is started again for the next dump unless closed)."""
        proc = self.proc
        if proc is not None:
            try:
                proc.kill()
            except OSError:
                pass
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
            self._forget()

    def kill(self) -> None:
        """Kill the worker for good (Ctrl-C): no restart after this."""
        with self._lock:               # a start() under way either sees ``closed`` or has set ``proc``
            self.closed = True
        self.kill_process()

    def close(self) -> None:
        """End the worker: close its input, give it ``CLOSE_GRACE`` seconds to exit, then kill it."""
        self.closed = True
        proc = self.proc
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(CLOSE_GRACE)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill_process()

    def request(self, message: dict, timeout: float) -> dict:
        """Send one request and wait for its reply; a worker is started first when none runs."""
        if self.proc is None:
            self.start()
        proc = self.proc
        if proc is None:                 # killed (Ctrl-C) between its start and this request
            raise _Died("worker process killed: the batch is stopping")
        since = self._stderr_size()
        try:
            proc.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
            proc.stdin.flush()
        except (OSError, ValueError):
            pass                     # the worker is gone: its death is what the reply queue reports
        try:
            return self._reply(timeout, since)
        except (_Timeout, _Died):
            self.kill_process()          # hung, or talking nonsense: a fresh process serves the next dump
            raise

    # -- the task --------------------------------------------------------------------------------------------
    def check_engine(self) -> Optional[str]:
        """None when the worker can open dumps with the options' engine, else why not (one line)."""
        try:
            reply = self.request({"op": "check", "engine": self.options.engine}, HELLO_TIMEOUT)
        except (_Timeout, _Died) as exc:
            return "the worker did not answer: %s" % (exc or "no reply")
        return None if reply.get("ok") else str(reply.get("error") or "the worker cannot open dumps")

    def run(self, path: str) -> Dict[str, object]:
        """Triage ``path``; the row to store (see the module docstring)."""
        options = self.options
        start = time.monotonic()
        try:
            reply = self.request({"op": "triage", "path": path, "symbols": options.symbols, "engine": options.engine,
                                  "memory_mb": options.memory_mb}, options.timeout)
        except (WorkerError, _Died) as exc:      # could not start, or died on this dump
            return failure_result("crashed", str(exc), time.monotonic() - start, options.engine, _header_facts(path))
        except _Timeout:
            return failure_result("timeout", "no result after %s s, worker killed" % _format_seconds(options.timeout),
                                  time.monotonic() - start, options.engine, _header_facts(path))
        seconds = float(reply.get("seconds") or 0.0)
        if reply.get("status") == "ok" and isinstance(reply.get("record"), dict):
            return result_from_record(reply["record"], seconds, options.engine)
        if reply.get("restart"):
            self.kill_process()
        return failure_result("error", str(reply.get("error") or "no record"), seconds, options.engine,
                              reply.get("facts") if isinstance(reply.get("facts"), dict) else None)


class WorkerPool:
    """One ``ChildWorker`` per calling thread, so each job thread drives its own process; all stoppable at once."""

    def __init__(self, options: TaskOptions) -> None:
        self.options = options
        self._local = threading.local()
        self._workers: List[ChildWorker] = []
        self._spare: List[ChildWorker] = []
        self._lock = threading.Lock()
        self.closed = False

    def adopt(self, worker: ChildWorker) -> None:
        """A worker already running (the one ``check_worker`` started): the first thread that needs one gets it."""
        with self._lock:
            if self.closed:
                worker.closed = True
            self._workers.append(worker)
            self._spare.append(worker)

    def worker(self) -> ChildWorker:
        worker = getattr(self._local, "worker", None)
        if worker is None:
            with self._lock:
                if self._spare:
                    worker = self._spare.pop()
                else:
                    worker = ChildWorker(self.options)
                    worker.closed = self.closed
                    self._workers.append(worker)
            self._local.worker = worker
        return worker

    def run(self, path: str) -> Dict[str, object]:
        return self.worker().run(path)

    def _close_to_new(self) -> List[ChildWorker]:
        """Mark the pool closed (no worker starts after this) and return every worker it has."""
        with self._lock:
            self.closed = True
            return list(self._workers)

    def kill(self) -> None:
        """Ctrl-C: kill every worker process now; none is started again."""
        for worker in self._close_to_new():
            worker.kill()

    def close(self) -> None:
        for worker in self._close_to_new():
            worker.close()


_pools: Dict[str, WorkerPool] = {}
_pools_lock = threading.Lock()


def _pool_for(options: TaskOptions) -> WorkerPool:
    key = repr((options.symbols, options.timeout, options.memory_mb, options.engine, list(options.child_argv)))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = WorkerPool(options)
        return pool


def run_dump(path: str, options: TaskOptions) -> Dict[str, object]:
    """Triage one dump in this thread's worker process (started on first use, reused after).

    Returns the ``results`` columns except sha256/tool_version; never raises for a bad dump."""
    return _pool_for(options).run(path)


@atexit.register
def close_workers() -> None:
    """End every worker process ``run_dump`` started (at exit, or when a Dask worker is torn down)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def check_worker(options: TaskOptions, keep: bool = False) -> Optional[ChildWorker]:
    """Start one worker and ask it whether it can open dumps with ``options.engine``; ``PytriageError`` if not.

    The batch runs this before it starts so a missing pybag, or a worker that cannot start at all, fails the
    batch in one line instead of producing a row of errors per dump. ``keep``: return the running worker (for
    ``WorkerPool.adopt``) instead of closing it."""
    worker = ChildWorker(options)
    try:
        try:
            reason = worker.check_engine()
        except WorkerError as exc:
            raise PytriageError(str(exc)) from None
        if reason is not None and options.engine == "dbgeng":
            raise PytriageError("--engine dbgeng needs Windows with the Debugging Tools for Windows and "
                                "`pip install pytriage[dbgeng]` (pybag): %s" % reason)
        if reason is not None:
            raise PytriageError(reason)
    except BaseException:
        worker.close()
        raise
    if keep:
        return worker
    worker.close()
    return None
