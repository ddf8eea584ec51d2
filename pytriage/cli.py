"""`pytriage` command line: the offline way in (DESIGN 1).

Every ``PytriageError`` (bad dump, unreadable memory, bad spec) becomes one line on stderr and exit
code 2; ``--debug`` shows the traceback instead, for developers.
"""

import argparse
import os
import sys
import tempfile
from typing import List, Optional

from pytriage import __version__
from pytriage.errors import PytriageError

EXIT_USAGE_OR_INPUT = 2
EXIT_INTERNAL = 3


def _cmd_info(args: argparse.Namespace) -> int:
    from pytriage.commands.info import gather_info, info_to_json, render_info_text
    from pytriage.commands.render import to_json_text
    from pytriage.target.offline import OfflineDumpTarget

    target = OfflineDumpTarget.open(args.dump)
    try:
        info = gather_info(target, args.dump)
        if args.json:
            print(to_json_text(info_to_json(info, args.stats)))
        else:
            print(render_info_text(info, args.stats))
    finally:
        target.close()
    return 0


def _parse_address(text: str) -> int:
    """Addresses as users type them in WinDbg: hex by default, backtick separators allowed."""
    clean = text.strip().replace("`", "")
    try:
        return int(clean, 16) if not clean.lower().startswith("0n") else int(clean[2:], 10)
    except ValueError:
        raise argparse.ArgumentTypeError("not an address: %r" % text) from None


def _cmd_db(args: argparse.Namespace) -> int:
    from pytriage.commands.memory import dump_bytes
    from pytriage.target.offline import OfflineDumpTarget

    if not 0 < args.length <= 0x100000:
        raise PytriageError("length must be between 1 and 0x100000 bytes")
    target = OfflineDumpTarget.open(args.dump)
    try:
        for line in dump_bytes(target, args.address, args.length, args.physical):
            print(line)
    finally:
        target.close()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pytriage.scenarios import build_builtin, builtin_names

    if args.list:
        for name, summary in builtin_names():
            print("%-24s %s" % (name, summary))
        return 0
    with tempfile.TemporaryDirectory(prefix="pytriage-demo-") as tmp:
        built = build_builtin(args.name, tmp, dump_type=args.type)
        print("Built scenario '%s' -> %s (%s dump)" % (args.name, os.path.basename(built.dump_path), args.type))
        print("")
        args.dump = built.dump_path
        args.json = False
        return _cmd_info(args)


def _cmd_scenario(args: argparse.Namespace) -> int:
    from pytriage.scenarios import build_from_file

    built = build_from_file(args.spec, args.output, dump_type=args.type)
    print(built.dump_path)
    print(built.symbols_path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytriage", description=(
        "Network-aware Windows kernel crash triage. Offline engine: reads full, bitmap and triage "
        "kernel dumps on any OS."))
    parser.add_argument("--version", action="version", version="pytriage %s" % __version__)
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks (for developers)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="dump header facts, bugcheck, context and module list")
    info.add_argument("dump", help="kernel dump file (.dmp)")
    info.add_argument("--json", action="store_true", help="print the JSON record (docs/cli.md)")
    info.add_argument("--stats", action="store_true", help="show how many bytes were read from the target")
    info.set_defaults(func=_cmd_info)

    db = sub.add_parser("db", help="show memory bytes like WinDbg's db")
    db.add_argument("dump", help="kernel dump file")
    db.add_argument("address", type=_parse_address, help="address (hex; fffff804`7ba00000 style accepted)")
    db.add_argument("-l", "--length", type=lambda t: _parse_address(t) if not t.isdigit() else int(t),
                    default=0x80, help="bytes to show (default 0x80; decimal, or hex with 0x)")
    db.add_argument("--physical", action="store_true", help="ADDRESS is a physical address (db /p)")
    db.set_defaults(func=_cmd_db)

    demo = sub.add_parser("demo", help="build a built-in scenario dump in a temp dir and analyse it")
    demo.add_argument("name", nargs="?", default="basic", help="built-in scenario (see --list)")
    demo.add_argument("--list", action="store_true", help="list the built-in scenarios")
    demo.add_argument("--type", choices=("full", "bitmap"), default="bitmap", help="dump kind to write")
    demo.add_argument("--stats", action="store_true", help="show how many bytes were read from the target")
    demo.set_defaults(func=_cmd_demo)

    scen = sub.add_parser("scenario", help="build a dump + ISF symbols from a JSON scenario spec (docs/scenarios.md)")
    scen.add_argument("spec", help="scenario spec (.json) or the name of a built-in scenario")
    scen.add_argument("-o", "--output", default=".", help="output directory (default: current)")
    scen.add_argument("--type", choices=("full", "bitmap"), default="bitmap", help="dump kind to write")
    scen.set_defaults(func=_cmd_scenario)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE_OR_INPUT
    try:
        return int(args.func(args))
    except PytriageError as exc:
        if args.debug:
            raise
        print("pytriage: error: %s" % exc, file=sys.stderr)
        return EXIT_USAGE_OR_INPUT
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("pytriage: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in pytriage: still one line, the traceback with --debug
        if args.debug:
            raise
        print("pytriage: internal error: %s: %s (run with --debug and report it)"
              % (type(exc).__name__, exc), file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
