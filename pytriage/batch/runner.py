"""``pytriage batch DIR``: find the dumps, skip what the store already has, triage the rest in parallel.

The order of work, and why:

1. discover dumps by signature (``discover``); other files are listed as skipped;
2. hash each dump (``identity``), reusing the hash stored for an unchanged (path, size, mtime_ns), in a thread
   pool: hashlib releases the GIL, so several large files hash at once;
3. plan: one triage per distinct content not yet stored for this pytriage version, so a re-run triages
   nothing, new dumps are triaged alone, and a dump copied into two folders is triaged once;
4. triage: ``jobs`` threads, each driving one worker process through ``task`` (or, with ``--dask``, the same
   task on a Dask cluster through ``dask_runner``); each result is committed in its own transaction as it
   arrives, so an interruption loses only the dumps in flight;
5. reports from the store (``report.write_reports``), also after Ctrl-C, from what is stored.

Ctrl-C: the worker processes are killed, the run is marked interrupted, the reports are written from what is
stored, and the caller exits 130; the next run continues where this one stopped.
"""

import concurrent.futures
import glob
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

from pytriage import __version__
from pytriage.batch.discover import find_dumps
from pytriage.batch.identity import content_hash, file_key
from pytriage.batch.progress import Progress
from pytriage.batch.store import ResultStore
from pytriage.batch.task import TaskOptions, WorkerPool, check_worker
from pytriage.errors import PytriageError

STORE_NAME = "results.sqlite"
ENGINES = ("offline", "dbgeng")
MAX_JOBS = 256
MIN_MEMORY_MB = 128


@dataclass
class BatchSummary:
    """What a batch did; the CLI prints it, tests check it."""

    run_id: int
    root: str
    out_dir: str
    store_path: str
    found: int = 0                                              # dump files found
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason): not dumps, unreadable
    distinct: int = 0                                           # distinct dump contents among them
    duplicates: int = 0                                         # files whose content an earlier file has
    already: int = 0                                            # distinct contents stored before this run
    to_triage: int = 0                                          # distinct contents this run had to triage
    triaged: int = 0                                            # results this run stored
    with_result: int = 0                                        # dump files of the run that have a result
    by_status: Dict[str, int] = field(default_factory=dict)     # dump files of the run, by result status
    interrupted: bool = False
    seconds: float = 0.0                                        # wall time of the triage step
    reports: Dict[str, str] = field(default_factory=dict)       # kind -> path
    report_error: Optional[str] = None



def _validate(root: str, jobs: int, options: TaskOptions) -> None:
    if not os.path.exists(root):
        raise PytriageError("%s does not exist" % root)
    if not os.path.isdir(root):
        raise PytriageError("%s is not a folder (pytriage batch takes a folder of dumps; one dump: pytriage "
                            "analyze)" % root)
    try:
        os.path.abspath(root).encode("utf-8")
    except UnicodeEncodeError:
        raise PytriageError("the folder's path is not valid UTF-8 (the results database stores UTF-8): "
                            "rename it") from None
    if not 1 <= jobs <= MAX_JOBS:
        raise PytriageError("--jobs must be between 1 and %d" % MAX_JOBS)
    if not options.timeout > 0:
        raise PytriageError("--timeout must be more than 0 seconds")
    if options.memory_mb != 0 and options.memory_mb < MIN_MEMORY_MB:
        raise PytriageError("--memory-mb must be 0 (no cap) or at least %d" % MIN_MEMORY_MB)
    if options.engine not in ENGINES:
        raise PytriageError("--engine must be one of: %s" % ", ".join(ENGINES))
    from pytriage.symbols.sympath import resolve_symbol_path
    resolve_symbol_path(options.symbols)            # a bad --symbols is one line now, not one per dump


def _open_store(out_dir: str) -> ResultStore:
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise PytriageError("cannot create the output folder %s: %s" % (out_dir, exc.strerror or exc)) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PytriageError("cannot write to the output folder %s" % out_dir)
    return ResultStore(os.path.join(out_dir, STORE_NAME))


def _exclude_out_dir(root: str, out_dir: str) -> List[str]:
    """A pattern that keeps the output folder out of the walk when it lies inside DIR."""
    rel = os.path.relpath(out_dir, root)
    if rel == os.curdir or rel.startswith(os.pardir + os.sep) or rel == os.pardir or os.path.isabs(rel):
        return []
    return [glob.escape(rel.replace(os.sep, "/"))]


def _write_reports(store: ResultStore, run_id: int, out_dir: str) -> Dict[str, str]:
    from pytriage.batch.report import write_reports
    return dict(write_reports(store, run_id, out_dir))


def _completed(futures) -> Iterator[concurrent.futures.Future]:
    """``as_completed`` that wakes twice a second: on Windows a blocked wait does not see Ctrl-C."""
    pending = set(futures)
    while pending:
        done, pending = concurrent.futures.wait(pending, timeout=0.5,
                                                return_when=concurrent.futures.FIRST_COMPLETED)
        yield from done


class _IgnoreSigint:
    """Ctrl-C pressed again while the batch cleans up after the first one waits until the cleanup is done."""

    def __enter__(self) -> None:
        self.saved = None
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGINT"):
            self.saved = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            signal.signal(signal.SIGINT, self.saved)


class BatchRun:
    """One ``run_batch`` call's state (see the module docstring for the steps)."""

    def __init__(self, root: str, out_dir: str, jobs: int, options: TaskOptions, dask: Optional[str],
                 progress_stream: Optional[TextIO], tty: Optional[bool], exclude: Sequence[str],
                 retry_failed: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.out_dir = os.path.abspath(out_dir)
        self.jobs = jobs
        self.options = options
        self.dask = dask
        self.retry_failed = retry_failed
        self.progress_stream = progress_stream
        self.tty = tty
        self.exclude = list(exclude) + _exclude_out_dir(self.root, self.out_dir)
        self.cancel = threading.Event()
        self.pool = WorkerPool(options)
        self.dask_results: Optional[Iterator] = None
        self.store: Optional[ResultStore] = None
        self.summary: Optional[BatchSummary] = None

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    # -- 2. hashing ----------------------------------------------------------------------------------------------
    def _hash(self, dumps: List[str], run_id: int) -> Dict[str, str]:
        """path -> sha256 for every dump that could be read; unreadable ones go to the skipped list."""
        store, summary = self.store, self.summary
        hashes: Dict[str, str] = {}
        keys: Dict[str, Tuple[int, int]] = {}
        todo: List[str] = []
        for path in dumps:
            try:
                keys[path] = file_key(path)
            except OSError as exc:
                summary.skipped.append((path, "unreadable: %s" % (exc.strerror or exc)))
                continue
            cached = store.cached_hash(path, *keys[path])
            if cached is not None:
                hashes[path] = cached
                store.record_file(path, self._rel(path), keys[path][0], keys[path][1], cached, run_id)
            else:
                todo.append(path)
        if not todo:
            return hashes
        progress = Progress(len(todo), self.progress_stream, self.tty, label="hashing")
        progress.begin()
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, min(self.jobs, 8))) as pool:
            futures = {pool.submit(content_hash, path, self.cancel): path for path in todo}
            try:
                for future in _completed(futures):
                    path = futures[future]
                    try:
                        digest = future.result()
                    except OSError as exc:
                        summary.skipped.append((path, "unreadable: %s" % (exc.strerror or exc)))
                        progress.advance("unreadable", self._rel(path), exc.strerror or str(exc))
                        continue
                    hashes[path] = digest
                    store.record_file(path, self._rel(path), keys[path][0], keys[path][1], digest, run_id)
                    progress.advance()
            except BaseException:
                self.cancel.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            finally:
                progress.end()
        return hashes

    # -- 4. triage -----------------------------------------------------------------------------------------------
    def _store_result(self, sha256: str, path: str, result: Dict[str, object], run_id: int,
                      progress: Progress) -> None:
        self.store.put_result(sha256, __version__, result, run_id)
        self.summary.triaged += 1
        status = str(result.get("status"))
        progress.advance(status, self._rel(path), None if status == "ok" else str(result.get("error")))

    def _triage_local(self, plan: List[Tuple[str, str]], run_id: int, progress: Progress) -> None:
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=min(self.jobs, len(plan)),
                                                         thread_name_prefix="pytriage-job")
        try:
            futures = {executor.submit(self.pool.run, path): (sha256, path) for sha256, path in plan}
            for future in _completed(futures):
                sha256, path = futures[future]
                self._store_result(sha256, path, future.result(), run_id, progress)
        except BaseException:
            self.pool.kill()
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        executor.shutdown(wait=True)

    def _triage_dask(self, plan: List[Tuple[str, str]], run_id: int, progress: Progress) -> None:
        from pytriage.batch.dask_runner import run_on_dask

        by_path = {path: sha256 for sha256, path in plan}
        self.dask_results = iter(run_on_dask(self.dask, [path for _, path in plan], self.options))
        for path, result in self.dask_results:
            self._store_result(by_path[path], path, result, run_id, progress)

    # -- the whole run -------------------------------------------------------------------------------------------
    def _tally(self, run_id: int) -> None:
        rows = self.store.run_results(run_id)
        self.summary.with_result = len(rows)
        self.summary.by_status = dict(Counter(row["status"] for row in rows))

    def run(self) -> BatchSummary:
        _validate(self.root, self.jobs, self.options)
        try:
            if self.dask:
                from pytriage.batch.dask_runner import import_distributed
                import_distributed()        # no dask.distributed: one line before any dump is hashed
            if self.options.engine == "dbgeng" and not self.dask:
                # no pybag: fail before walking a single folder (the checked worker then triages)
                self.pool.adopt(check_worker(self.options, keep=True))
            self.store = _open_store(self.out_dir)
            try:
                return self._run()
            finally:
                self.store.close()
        finally:
            self.pool.close()

    def _run(self) -> BatchSummary:
        store = self.store
        discovery = find_dumps(self.root, self.exclude)
        # runs.engine: where the run triaged ("dask" for a cluster run; each result row names its engine)
        run_id = store.start_run(self.root, __version__, "dask" if self.dask else self.options.engine,
                                 len(discovery.dumps))
        summary = self.summary = BatchSummary(run_id, self.root, self.out_dir, store.path,
                                              found=len(discovery.dumps), skipped=list(discovery.skipped))
        try:
            hashes = self._hash(discovery.dumps, run_id)
            if len(hashes) != summary.found:
                summary.found = len(hashes)
                store.set_found(run_id, summary.found)
            first: Dict[str, str] = {}
            for path in discovery.dumps:                  # sorted: the first path of a content triages it
                if path in hashes:
                    first.setdefault(hashes[path], path)
            stored = store.stored_hashes(__version__, ok_only=self.retry_failed)
            plan = [(sha256, path) for sha256, path in first.items() if sha256 not in stored]
            summary.distinct, summary.to_triage = len(first), len(plan)
            summary.already = summary.distinct - summary.to_triage
            summary.duplicates = len(hashes) - len(first)
            if plan and not self.dask and self.options.engine != "dbgeng":
                self.pool.adopt(check_worker(self.options, keep=True))
            progress = Progress(len(plan), self.progress_stream, self.tty)
            start = time.monotonic()
            if plan:
                progress.begin()
                try:
                    if self.dask:
                        self._triage_dask(plan, run_id, progress)
                    else:
                        self._triage_local(plan, run_id, progress)
                finally:
                    progress.end()
            summary.seconds = time.monotonic() - start
        except KeyboardInterrupt:
            with _IgnoreSigint():
                self._stop()
                store.finish_run(run_id, interrupted=True)
                summary.interrupted = True
                self._tally(run_id)
                try:
                    summary.reports = _write_reports(store, run_id, self.out_dir)
                except Exception as exc:  # the stored results are what matters after Ctrl-C
                    summary.report_error = "%s: %s" % (type(exc).__name__, exc)
            return summary
        except BaseException:
            self._stop()
            store.finish_run(run_id, interrupted=False)
            raise
        store.finish_run(run_id, interrupted=False)
        self._tally(run_id)
        summary.reports = _write_reports(store, run_id, self.out_dir)
        return summary

    def _stop(self) -> None:
        """Kill the workers and close the Dask stream (idempotent)."""
        self.cancel.set()
        self.pool.kill()
        if self.dask_results is not None and hasattr(self.dask_results, "close"):
            try:
                self.dask_results.close()
            except Exception:   # the cluster's own shutdown trouble must not hide the interruption
                pass


def run_batch(root: str, out_dir: str, jobs: int, options: TaskOptions, dask: Optional[str] = None,
              progress_stream: Optional[TextIO] = sys.stderr, tty: Optional[bool] = None,
              exclude: Sequence[str] = (), retry_failed: bool = False) -> BatchSummary:
    """Triage every kernel dump under ``root`` into ``out_dir`` (results.sqlite and the reports).

    ``jobs``: worker processes (threads driving them); ``dask``: a scheduler address to run the task on a Dask
    cluster instead; ``progress_stream``: where progress goes (None: silent), as a bar when ``tty`` (default:
    the stream's isatty()); ``retry_failed``: triage again the dumps whose stored result is a failure (error,
    timeout, crashed) instead of keeping it. Raises ``PytriageError`` for bad input (folder missing, output
    not writable, engine unusable); after Ctrl-C returns the summary with ``interrupted`` set."""
    return BatchRun(root, out_dir, jobs, options, dask, progress_stream, tty, exclude, retry_failed).run()


MAX_SKIPPED_SHOWN = 50


def summary_lines(summary: BatchSummary) -> List[str]:
    """What ``pytriage batch`` prints when it is done."""
    lines = ["Batch: %d kernel dump%s under %s (%d other file%s skipped)" % (
        summary.found, "" if summary.found == 1 else "s", summary.root, len(summary.skipped),
        "" if len(summary.skipped) == 1 else "s")]
    rate = " (%.1f dumps/s)" % (summary.triaged / summary.seconds) if summary.triaged and summary.seconds else ""
    lines.append("Triaged now: %d in %.1f s%s; already in the store: %d; same content as another file: %d" % (
        summary.triaged, summary.seconds, rate, summary.already, summary.duplicates))
    statuses = ", ".join("%d %s" % (summary.by_status[s], s) for s in ("ok", "error", "timeout", "crashed")
                         if summary.by_status.get(s))
    lines.append("Results: %s" % (statuses or "none"))
    if summary.skipped:
        lines.append("Skipped:")
        for path, reason in summary.skipped[:MAX_SKIPPED_SHOWN]:
            rel = os.path.relpath(path, summary.root).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            lines.append("  %s: %s" % (rel, reason))
        if len(summary.skipped) > MAX_SKIPPED_SHOWN:
            lines.append("  ... and %d more" % (len(summary.skipped) - MAX_SKIPPED_SHOWN))
    written = [summary.store_path] + [summary.reports[k] for k in sorted(summary.reports)]
    lines.append("Wrote: %s" % ", ".join(written))
    return lines
