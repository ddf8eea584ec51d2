"""Runs one pytriage command inside the debugger: argv as the user typed it after the command name.

Why a runner of its own: pykd executes `!py -m module args` with ``sys.argv`` set and no ``__file__``; it
keeps one Python interpreter for the whole debugger session and is not re-entrant, so a command started
while another runs (a nested `!py` from a breakpoint command, say) must refuse instead of corrupting the
first. Errors are one line on the debugger's output, never a traceback, and never end the interpreter
(no ``sys.exit`` inside the debugger: pykd would report the SystemExit as a script failure).

Two things come from the debugger rather than the command line:

- The symbol path: without ``--symbols``, the session's own (``.sympath``, through the target), so the
  command names the PDBs ``k`` names; ``_NT_SYMBOL_PATH`` and the local cache only after that.
- DML: when the output stream is pykd's (it has ``writedml``, which pykd's ``dprint(str, dml=True)`` uses),
  the output is written once as DML with the follow-up commands as links (``pytriage.pyext.dml``);
  ``PYTRIAGE_DML=0`` turns that off. The text is the same characters either way.
"""

import argparse
import contextlib
import io
import os
import re
import sys
from typing import Callable, List, Optional

from pytriage.errors import PytriageError

PLACEHOLDER_DUMP = "<debugger>"          # the parsers' DUMP argument; the target comes from the debugger
COMMANDS = {"analyze": "pytriage", "pooltag": "pooltag", "nblwalk": "nblwalk"}   # cli name -> debugger name
_running = False


def default_target():
    """A target reading through pykd (imported only now: pytriage itself never needs it)."""
    from pytriage.target.pykd_target import PykdTarget
    return PykdTarget()


def run(command: str, argv: List[str], target_factory: Optional[Callable[[], object]] = None,
        out=None, prog: Optional[str] = None) -> int:
    """Run the cli ``command`` on the debugger's target; returns the exit code the command line would give.
    ``target_factory`` makes the target (default: pykd's); ``out`` is where errors go (default stdout, which
    pykd shows in the command window); ``prog`` replaces ``!name`` in usage and errors (``pytriage live``)."""
    global _running
    out = out or sys.stdout
    name = prog or "!" + COMMANDS.get(command, command)
    if _running:
        out.write("pytriage: %s: another pytriage command is still running in this debugger session\n" % name)
        return 2
    _running = True
    try:
        return _run(command, name, list(argv), target_factory or default_target, out)
    finally:
        _running = False


def _as_debugger_command(parser, command: str, name: str) -> None:
    """Usage and errors say `!nblwalk ADDRESS ...`, without the command line's DUMP argument."""
    for action in parser._actions:               # argparse keeps subparsers here (stable since Python 3.2)
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub = action.choices[command]
            sub.prog = name
            usage = sub.format_usage()[len("usage: "):].strip()
            sub.usage = re.sub(r"\s+", " ", usage).replace(" dump", "", 1)


def _run(command: str, name: str, argv: List[str], target_factory, out) -> int:
    from pytriage import cli

    parser = cli.build_parser()
    _as_debugger_command(parser, command, name)
    try:
        args = parser.parse_args([command, PLACEHOLDER_DUMP] + argv)
    except SystemExit as exc:              # argparse printed the usage or --help already
        return int(exc.code or 0)
    try:
        args.target = target_factory()
        if getattr(args, "symbols", "") is None:
            args.symbols = args.target.debugger_symbol_path()
        writedml = getattr(sys.stdout, "writedml", None)
        if writedml is None or os.environ.get("PYTRIAGE_DML", "1") == "0":
            return int(args.func(args))
        return _run_with_dml(args, writedml)
    except PytriageError as exc:
        out.write("pytriage: %s: %s\n" % (name, exc))
        return 2
    except Exception as exc:  # a pytriage bug: one line, and the session goes on
        if getattr(args, "debug", False):
            raise
        out.write("pytriage: %s: internal error: %s: %s (run `pytriage ... --debug` offline and report it)\n"
                  % (name, type(exc).__name__, exc))
        return 3


def _run_with_dml(args: argparse.Namespace, writedml: Callable[[str], None]) -> int:
    """Run the command with its output collected, then write it as DML in one piece (what it printed before
    an error still reaches the user; the error line itself goes out as plain text)."""
    from pytriage.pyext.dml import to_dml

    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            return int(args.func(args))
    finally:
        if buffer.getvalue():
            writedml(to_dml(buffer.getvalue()))
