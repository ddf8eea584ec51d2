"""The three report files of a batch run, written from the result store alone.

The batch runner calls ``write_reports`` when a run ends, and also after Ctrl-C: the reports are a pure
function of what the store holds for that run, so a partial run gets correct partial reports, and
re-running the reports never needs the dumps. Each file is written to a temporary name and renamed, so
an interrupted write leaves the previous report, not half a file.
"""

import os
from typing import Any, Callable, Dict, TextIO

from pytriage.batch.groups import build_report
from pytriage.batch.report_html import render_html
from pytriage.batch.report_jsonl import write_jsonl
from pytriage.batch.report_markdown import render_markdown

FILE_NAMES = {"jsonl": "results.jsonl", "markdown": "summary.md", "html": "report.html"}


def _write_atomically(path: str, write: Callable[[TextIO], Any]) -> None:
    # not tempfile.mkstemp: its files are private (0600) and the reports are meant to be shared
    tmp = os.path.join(os.path.dirname(path), ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    try:
        # errors="replace": a lone surrogate from a damaged dump string must not cost the whole report
        with open(tmp, "w", encoding="utf-8", errors="replace", newline="\n") as out:
            write(out)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
