"""The three report files of a batch run, written from the result store alone.

The batch runner calls ``write_reports`` when a run ends, and also after Ctrl-C: the reports are a pure
function of what the store holds for that run, so a partial run gets correct partial reports, and
re-running the reports never needs the dumps. Each file is written to a temporary name and renamed, so
an interrupted write leaves the previous report, not half a file.
"""

import io
import os
from typing import IO, Any, Callable, Dict, TextIO

from pytriage.batch.groups import build_report
from pytriage.batch.report_html import render_html
from pytriage.batch.report_jsonl import write_jsonl
from pytriage.batch.report_markdown import render_markdown
from pytriage.symbols.store_files import atomic_write

FILE_NAMES = {"jsonl": "results.jsonl", "markdown": "summary.md", "html": "report.html"}


def _write_atomically(path: str, write: Callable[[TextIO], Any]) -> None:
    """``write`` text into ``path`` through the symbol cache's atomic writer (temporary file, then rename;
    the usual permissions, since reports are meant to be shared)."""
    def write_bytes(raw: IO[bytes]) -> None:
        # errors="replace": a lone surrogate from a damaged dump string must not cost the whole report
        out = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="\n")
        write(out)
        out.flush()
        out.detach()                     # the raw file is the atomic writer's to close

    atomic_write(path, write_bytes)


def write_reports(store: Any, run_id: int, out_dir: str) -> Dict[str, str]:
    """Writes results.jsonl, summary.md and report.html for run ``run_id`` into ``out_dir``.

    Returns kind ("jsonl", "markdown", "html") -> path written.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, name) for kind, name in FILE_NAMES.items()}
    report = build_report(store, run_id)
    _write_atomically(paths["jsonl"], lambda out: write_jsonl(store, run_id, out))
    _write_atomically(paths["markdown"], lambda out: out.write(render_markdown(report)))
    _write_atomically(paths["html"], lambda out: out.write(render_html(report)))
    return paths
