"""The batch worker process: ``python -m pytriage.batch.child``, one triage at a time, JSON lines.

Why a separate process per job and not a thread or ``multiprocessing``: a dump can make the triage loop, eat
memory or crash the interpreter (a C extension on a corrupt structure). Only a process can be killed safely
when it overruns its time budget, capped with RLIMIT_AS, and restarted without losing the batch. Starting
Python and importing the triage costs more than triaging a small dump, so one process serves many dumps.

Protocol (one JSON object per line; the parent is ``pytriage.batch.task``):

- on start the child writes ``{"hello": "pytriage.batch.child/1", "version": ..., "pid": ...}``;
- request ``{"op": "check", "engine": E}`` -> ``{"ok": true}`` or ``{"ok": false, "error": "..."}``: can this
  process open dumps with engine E (``dbgeng`` needs pybag)?
- request ``{"op": "triage", "path": P, "symbols": S, "engine": E, "memory_mb": N}`` ->
  ``{"status": "ok", "seconds": s, "record": {...}}`` or ``{"status": "error", "error": "one line", "seconds": s,
  "facts": {...}, "restart": bool}``; ``facts`` are what the dump header still tells (bugcheck, crash time)
  when the triage failed; ``restart`` asks the parent for a fresh process (after running out of memory);
- end of input -> the child exits.

The protocol owns the real stdout; anything else the triage prints goes to stderr, which the parent keeps
for the crash report. Ctrl-C is the parent's business: the child ignores SIGINT and is killed by the parent.
"""

import json
import os
import signal
import sys
import time
from typing import Dict, Optional, TextIO

from pytriage import __version__
from pytriage.errors import PytriageError, first_line

PROTOCOL = "pytriage.batch.child/1"
_classifier = None


def set_memory_cap(memory_mb: int, dump_size: int) -> bool:
    """Cap this process's address space at ``memory_mb`` MB plus the dump's size (the dump is memory-mapped).

    Only the soft limit is lowered, so the next dump can set its own. POSIX only: Windows has no RLIMIT_AS,
    and a platform that refuses the limit runs uncapped. True when the cap is in force."""
    if memory_mb <= 0:
        return False
    try:
        import resource
    except ImportError:          # Windows
        return False
    limit = (memory_mb << 20) + dump_size
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        return False
    return True


def lift_memory_cap() -> None:
    """Back to the hard limit between dumps (protocol I/O is not the triage's budget)."""
    try:
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def header_facts(path: str) -> Dict[str, object]:
    """Bugcheck and crash time from the dump header alone, for a dump whose triage failed (truncated, corrupt
    memory): the row still groups by bugcheck and shows when the machine crashed. Empty when the header itself
    cannot be read."""
    from pytriage.analysis.bugcheck_kb import bugcheck_name
    from pytriage.dump.filemap import DumpFile
    from pytriage.dump.header import read_header

    try:
        dump = DumpFile(path)
    except PytriageError:
        return {}
    try:
        header = read_header(dump)
    except PytriageError:
        return {}
    finally:
        dump.close()
    facts: Dict[str, object] = {"bugcheck_code": "0x%X" % header.bugcheck_code,
                                "bugcheck_name": bugcheck_name(header.bugcheck_code)}
    if header.crash_time is not None:
        facts["dump_time"] = header.crash_time
    return facts


def triage_path(path: str, symbols: Optional[str], engine: str) -> dict:
    """The triage record of one dump (``pytriage analyze --json``); tests replace this to make a worker hang."""
    global _classifier
    from pytriage.analysis.triage.modules import load_classifier
    from pytriage.commands.analyze import analyze_dump

    if _classifier is None:
        _classifier = load_classifier()
    return analyze_dump(path, symbols=symbols, engine=engine, classifier=_classifier)


def check_engine(engine: str) -> Optional[str]:
    """None when this process can open dumps with ``engine``, else the one-line reason."""
    if engine == "offline":
        return None
    if engine == "dbgeng":
        from pytriage.target.pybag_target import import_pybag
        try:
            import_pybag()
        except PytriageError as exc:
            return str(exc)
        return None
    return "unknown engine %r" % engine


def handle(request: dict) -> dict:
    op = request.get("op")
    if op == "check":
        reason = check_engine(str(request.get("engine")))
        return {"ok": reason is None, "error": reason}
    if op != "triage":
        return {"status": "error", "error": "unknown request %r" % op, "seconds": 0.0}
    path = str(request["path"])
    start = time.monotonic()
    restart = False
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    set_memory_cap(int(request.get("memory_mb") or 0), size)
    try:
        record = triage_path(path, request.get("symbols"), str(request.get("engine") or "offline"))
        return {"status": "ok", "seconds": time.monotonic() - start, "record": record}
    except PytriageError as exc:
        error = first_line(exc) or type(exc).__name__
    except MemoryError:
        error = "out of memory: the triage needed more than --memory-mb %s MB (beyond the dump's own size)" % (
            request.get("memory_mb"))
        restart = True
    except RecursionError as exc:
        error = "internal error: RecursionError: %s" % first_line(exc)
    except Exception as exc:  # a bug in pytriage on this dump: one row, the batch goes on
        error = "internal error: %s: %s" % (type(exc).__name__, first_line(exc))
    finally:
        lift_memory_cap()
    seconds = time.monotonic() - start
    return {"status": "error", "error": error, "seconds": seconds, "facts": header_facts(path), "restart": restart}


def warm_up() -> None:
    """Import the triage and load the module list before saying hello, so a dump's seconds are its own."""
    global _classifier
    # imported for their import cost only: the modules every triage uses
    from pytriage.analysis.triage import engine  # noqa: F401
    from pytriage.analysis.triage.modules import load_classifier
    from pytriage.commands.analyze import analyze_dump  # noqa: F401
    from pytriage.symbols import symbolizer  # noqa: F401
    from pytriage.target import offline  # noqa: F401

    if _classifier is None:
        _classifier = load_classifier()


def serve(requests: TextIO, replies: TextIO) -> None:
    """Answer requests until end of input."""
    warm_up()
    replies.write(json.dumps({"hello": PROTOCOL, "version": __version__, "pid": os.getpid()}) + "\n")
    replies.flush()
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError:
            reply = {"status": "error", "error": "bad request line", "seconds": 0.0}
        else:
            reply = handle(request)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main() -> int:
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol keeps the real stdout; print() from anywhere in the triage lands on stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    requests = open(sys.stdin.fileno(), encoding="utf-8", closefd=False)
    serve(requests, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
