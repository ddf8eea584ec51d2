"""``pytriage batch DIR --dask ADDRESS``: the same per-dump task, on a Dask distributed cluster.

Why Dask and not a scheduler of our own: past one machine a batch needs task placement, worker loss detection,
retries on another worker and a dashboard; ``dask.distributed`` has all of that, runs on a laptop, an SSH
cluster, Kubernetes or a batch queue, and is a ``pip install`` away. pytriage only submits work to it.

What runs where:

- Each dump is one task, ``pytriage.batch.task.run_dump(path, options)``, the task the local runner runs: on
  the worker it drives a pytriage worker process (``python -m pytriage.batch.child``; a subprocess, so it also
  works inside Dask's daemonic worker processes), with the same time budget and memory cap. Tasks are submitted
  (``client.map``) with ``pure=False``: the same path submitted again is triaged again, never answered from
  another client's result.
- The worker command is the *worker's* Python unless the caller chose another one: the client's
  ``sys.executable`` may not exist on the cluster's machines.
- Results come back to the client as they complete (``as_completed``); the caller (the batch runner) writes
  them to its SQLite store, so the store never has to be reachable from the workers. Dump paths and the symbol
  path must be valid on the workers (a shared filesystem; see docs/batch.md).
- A task that failed on the cluster (its worker lost more often than ``allowed-failures``: ``KilledWorker``; a
  cancelled future; an exception in the task itself) is a row with an error, like a crashed dump in the local
  runner: the batch goes on. A scheduler that cannot be reached, or workers that cannot run pytriage at all,
  is one line before any dump is submitted.
"""

import concurrent.futures
import dataclasses
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

from pytriage.batch.task import TaskOptions, default_child_argv, failure_result, run_dump
from pytriage.errors import PytriageError, first_line

CONNECT_TIMEOUT = 20.0          # seconds to reach the scheduler
CHECK_TIMEOUT = 120.0           # seconds for the pre-flight task (a worker starting a pytriage worker process)


def import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise PytriageError("--dask needs dask.distributed on this machine and on the workers: "
                            "pip install 'pytriage[dask]'") from None
    return distributed


def _describe(exc: BaseException) -> str:
    text = first_line(exc)[:300]
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__


def dump_task(path: str, options: TaskOptions, worker_python: bool) -> Dict[str, object]:
    """The task as a Dask worker runs it: ``run_dump`` with the worker's own Python when ``worker_python``."""
    if worker_python:
        options = dataclasses.replace(options, child_argv=default_child_argv())
    return run_dump(path, options)


def check_task(options: TaskOptions, worker_python: bool) -> Optional[str]:
    """Pre-flight on one worker: None when it can start a pytriage worker process for ``options.engine``."""
    from pytriage.batch.task import ChildWorker, WorkerError

    if worker_python:
        options = dataclasses.replace(options, child_argv=default_child_argv())
    worker = ChildWorker(options)
    try:
        return worker.check_engine()
    except WorkerError as exc:
        return str(exc)
    finally:
        worker.close()


def _failed(future: Any, exc: BaseException, options: TaskOptions) -> Dict[str, object]:
    """The row of a task that produced no result (``exc``: what fetching its result raised)."""
    if future.status == "cancelled" or isinstance(exc, concurrent.futures.CancelledError):
        return failure_result("error", "Dask task cancelled before it finished (scheduler restarted, or the "
                              "client lost its connection)", 0.0, options.engine)
    if type(exc).__name__ == "KilledWorker":
        return failure_result("crashed", "Dask worker lost while triaging this dump (%s)" % _describe(exc), 0.0,
                              options.engine)
    return failure_result("error", "Dask task failed: %s" % _describe(exc), 0.0, options.engine)


def run_on_dask(address: str, paths: Sequence[str], options: TaskOptions) -> Iterator[Tuple[str, Dict[str, object]]]:
    """Triage ``paths`` on the Dask cluster whose scheduler is at ``address`` (``tcp://host:8786``); yields
    ``(path, result)`` as tasks complete, ``result`` being what ``run_dump`` returns (or the error row of a task
    that failed on the cluster). Closing the iterator (Ctrl-C) cancels what is still pending and closes the
    client. ``PytriageError`` for a scheduler that cannot be reached or workers that cannot run the task."""
    distributed = import_distributed()
    worker_python = list(options.child_argv) == default_child_argv()
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise PytriageError("cannot connect to the Dask scheduler %s: %s"
                            % (address, first_line(exc)[:300] or type(exc).__name__)) from None
    futures: Dict[Any, str] = {}
    try:
        _preflight(client, options, worker_python, address)
        paths = list(paths)
        # One map call: one message for the whole batch, and the scheduler sees it as one group of tasks (it
        # queues them and hands each worker thread one at a time, instead of piling them onto the first workers).
        submitted = client.map(dump_task, paths, [options] * len(paths), [worker_python] * len(paths), pure=False)
        futures.update(zip(submitted, paths))
        for future in distributed.as_completed(list(futures), loop=client.loop):
            path = futures.pop(future)
            # A result lives on its worker until fetched: if that worker dies first, Dask computes the task
            # again (the client still holds the future) and result() waits for that.
            try:
                result = future.result()
            except Exception as exc:
                yield path, _failed(future, exc, options)
                continue
            if not isinstance(result, dict):
                result = failure_result("error", "Dask task returned %s, not a result row" % type(result).__name__,
                                        0.0, options.engine)
            yield path, result
    finally:
        if futures:
            try:
                client.cancel(list(futures))
            except Exception:                # shutting down: the scheduler may already be gone
                pass
        client.close()


def _preflight(client: Any, options: TaskOptions, worker_python: bool, address: str) -> None:
    """One task on one worker before any dump: pytriage importable there and its worker process starts."""
    try:
        reason = client.submit(check_task, options, worker_python, pure=False).result(timeout=CHECK_TIMEOUT)
    except Exception as exc:
        raise PytriageError("the Dask workers of %s cannot run pytriage's task: %s" % (address, _describe(exc))) \
            from None
    if reason is not None:
        raise PytriageError("the Dask workers of %s cannot triage with engine %s: %s" % (address, options.engine,
                                                                                         reason))
