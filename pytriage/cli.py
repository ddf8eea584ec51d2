"""`pytriage` command line: the offline way in (DESIGN 1).

Every ``PytriageError`` (bad dump, unreadable memory, bad spec) becomes one line on stderr and exit
code 2; ``--debug`` shows the traceback instead, for developers.
"""

import argparse
import contextlib
import os
import sys
import tempfile
from typing import List, Optional

from pytriage import __version__
from pytriage.errors import PytriageError, format_address

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


def _open_symbolizer(target, args: argparse.Namespace):
    """The symbolizer for ``target`` from ``--symbols`` / ``_NT_SYMBOL_PATH`` / the default cache."""
    from pytriage.commands.analyze import open_symbolizer

    return open_symbolizer(target, args.symbols, progress=sys.stderr.isatty())


@contextlib.contextmanager
def _symbolized_dump(args: argparse.Namespace, require_x64: str = ""):
    """The dump ``args.dump`` as a target with its symbolizer; both closed on the way out.

    ``require_x64``: what needs x64 (e.g. "stack walking reads x64 unwind data"), refused on other dumps.
    """
    from pytriage.target.offline import OfflineDumpTarget

    given = getattr(args, "target", None)      # the debugger bridge's target (pytriage.pyext): not ours to close
    target = given if given is not None else OfflineDumpTarget.open(args.dump)
    try:
        if require_x64 and target.machine != "AMD64":
            raise PytriageError("%s; this dump is %s" % (require_x64, target.machine))
        symbolizer, path, store = _open_symbolizer(target, args)
        try:
            yield target, symbolizer, path, store
        finally:
            symbolizer.close()
    finally:
        if given is None:
            target.close()


def _stats_record(target, store) -> dict:
    """What ``--stats`` adds to a JSON record: target reads and symbol-store traffic."""
    return {"target": target.stats.to_json(), "symbol_store": store.stats_json()}


def _symbol_stats_lines(target, path, store) -> List[str]:
    stats = target.stats
    lines = ["", "Target reads: %d calls, %d bytes, %d cache hits, %d failed" % (
        stats.read_calls, stats.bytes_read, stats.cache_hits, stats.failed_reads)]
    lines.extend(path.describe())
    lines.append("Symbol store: %s" % store.stats_line())
    return lines


def _print_result(args: argparse.Namespace, record: dict, lines: List[str], target, path, store) -> None:
    """``--json``: the record (with ``stats`` under ``--stats``); else the text lines and the stats lines."""
    from pytriage.commands.render import to_json_text

    if args.json:
        if args.stats:
            record["stats"] = _stats_record(target, store)
        print(to_json_text(record))
    else:
        print("\n".join(lines))
        if args.stats:
            print("\n".join(_symbol_stats_lines(target, path, store)))


def _address_argument(text: str, symbolizer) -> int:
    """An address as typed (hex, backticks allowed) or a ``module!symbol`` resolved through the symbols."""
    from pytriage.commands.sym import looks_like_address, parse_address

    return parse_address(text) if looks_like_address(text) else symbolizer.address_of(text)


def _cmd_sym(args: argparse.Namespace) -> int:
    from pytriage.commands.sym import lookup, render_text

    with _symbolized_dump(args) as (target, symbolizer, path, store):
        records = [lookup(symbolizer, query) for query in args.query]
        lines = [line for record in records for line in render_text(record, args.verbose)]
        _print_result(args, {"schema": "pytriage.sym/1", "results": records}, lines, target, path, store)
    return 0


def _cmd_dt(args: argparse.Namespace) -> int:
    from pytriage.commands.dt import layout_lines, layout_to_json, value_lines, values_to_json
    from pytriage.commands.render import hex64, to_json_text
    from pytriage.symbols.types import StructLayout

    with _symbolized_dump(args) as (target, symbolizer, path, store):
        layout, where = symbolizer.type_layout(args.type)
        # Like the engine: a title only when the user did not say which module the type is from.
        title: Optional[str] = None
        if "!" not in args.type:
            title = layout.name if where.startswith("builtin") else "%s!%s" % (where.split(" ", 1)[0], layout.name)
        address = None
        if args.address is not None:
            address = _address_argument(args.address, symbolizer)
            if not isinstance(layout, StructLayout):
                raise PytriageError("%s is an enum: dt with an address needs a struct or union" % layout.name)
        if args.json:
            record = {"schema": "pytriage.dt/1", "type": layout_to_json(layout, where),
                      "address": None if address is None else hex64(address)}
            if address is not None:
                record["values"] = values_to_json(layout, target, address, symbolizer)
            if args.stats:
                record["stats"] = _stats_record(target, store)
            print(to_json_text(record))
        else:
            if address is None:
                lines = layout_lines(title, layout)
            else:
                lines = value_lines(title, layout, target, address, symbolizer)
            if where.startswith("builtin"):
                lines.append("(layout: %s, builds %s)" % (where, layout.builds or "any"))
            print("\n".join(lines))
            if args.stats:
                print("\n".join(_symbol_stats_lines(target, path, store)))
    return 0


def _cmd_stack(args: argparse.Namespace) -> int:
    from pytriage.analysis.stack_walk import WalkLimits
    from pytriage.commands.render import to_json_text
    from pytriage.commands.stack import render_text, start_context, to_json

    if not 1 <= args.max_frames <= 0x10000:
        raise PytriageError("--max-frames must be between 1 and 65536")
    with _symbolized_dump(args, require_x64="stack walking reads x64 unwind data") as (target, symbolizer, path,
                                                                                        store):
        context, source = start_context(target, args.rip, args.rsp, args.rbp, args.cxr,
                                        getattr(args, "processor", None), getattr(args, "trap", None),
                                        symbolizer, getattr(args, "thread", None))
        limits = WalkLimits(max_frames=args.max_frames, scan_unverified=args.scan_unverified)
        walk = target.stack(context, symbolizer=symbolizer, limits=limits)
        walk.start_source = source
        if args.json:
            record = to_json(walk)
            if args.stats:
                record["stats"] = _stats_record(target, store)
            print(to_json_text(record))
        else:
            print("\n".join(render_text(walk, numbers=args.numbers)))
            if args.stats:
                print("\n".join(["", "Stack walk: %d frames, %d bytes read from the target in %d calls" % (
                    len(walk.frames), walk.bytes_read, walk.read_calls)] + _symbol_stats_lines(target, path,
                                                                                               store)[1:]))
    return 0


def _scan_policy(args: argparse.Namespace) -> str:
    """--scan / --no-scan as the owner lookups' policy: always, never, or auto (offline when needed)."""
    return "always" if args.scan else "never" if args.no_scan else "auto"


def _cmd_pooltag(args: argparse.Namespace) -> int:
    from pytriage.analysis.pool.header import parse_tag
    from pytriage.commands.pooltag import (
        PoolTagContext,
        PoolTagOptions,
        pool_address,
        render_address,
        render_tag,
        render_usage,
        strip_private,
        tag_record,
        usage_record,
    )

    modes = [args.address is not None, args.tag is not None, args.summary]
    if sum(modes) != 1:
        raise PytriageError("give exactly one of: ADDRESS, -t TAG, -s")
    if not 1 <= args.top <= 100000:
        raise PytriageError("--top must be between 1 and 100000")
    options = PoolTagOptions(scan=_scan_policy(args),
                             pooltag_file=args.pooltag, verbose=args.verbose, top=args.top)
    with _symbolized_dump(args) as (target, symbolizer, path, store):
        ctx = PoolTagContext(target, symbolizer, options, progress_stream=sys.stderr)
        if args.address is not None:
            record = pool_address(ctx, _address_argument(args.address, symbolizer))
            lines = render_address(record, args.verbose)
        elif args.tag is not None:
            record = tag_record(ctx, parse_tag(args.tag))
            lines = render_tag(record)
        else:
            record = usage_record(ctx)
            lines = render_usage(record)
        _print_result(args, strip_private(record), lines, target, path, store)
    return 0


def _cmd_nblwalk(args: argparse.Namespace) -> int:
    from pytriage.commands.nblwalk import NblWalkOptions, nbl_walk, render_text
    from pytriage.commands.pooltag import strip_private

    if not 1 <= args.max <= 10000000:
        raise PytriageError("--max must be between 1 and 10000000")
    if args.pcap and args.no_packets:
        raise PytriageError("--pcap needs the packet bytes: leave out --no-packets")
    options = NblWalkOptions(max_nbls=args.max, verbose=args.verbose, pcap=args.pcap,
                             dot11="always" if args.dot11 else "never" if args.no_dot11 else "auto",
                             owners=not args.no_owners, packets=not args.no_packets,
                             scan=_scan_policy(args),
                             pooltag_file=args.pooltag)
    with _symbolized_dump(args, require_x64="NBL layouts are x64") as (target, symbolizer, path, store):
        record = nbl_walk(target, symbolizer, _address_argument(args.address, symbolizer), options,
                          progress_stream=sys.stderr)
        _print_result(args, strip_private(record), render_text(record, args.verbose), target, path, store)
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from pytriage.analysis.triage.engine import TriageOptions, triage
    from pytriage.analysis.triage.modules import load_classifier
    from pytriage.commands.analyze import X64_REQUIRED, render_text

    if not 1 <= args.max_frames <= 0x10000:
        raise PytriageError("--max-frames must be between 1 and 65536")
    classifier = load_classifier(args.triage_ini)
    options = TriageOptions(scan=_scan_policy(args), pooltag_file=args.pooltag,
                            max_frames=args.max_frames, nbls=not args.no_nbls)
    with _symbolized_dump(args, require_x64=X64_REQUIRED) as (target, symbolizer, path, store):
        record = triage(target, symbolizer, classifier, options, progress_stream=sys.stderr)
        record["dump"]["path"] = os.path.basename(args.dump) if getattr(args, "target", None) is None else "<debugger>"
        _print_result(args, record, render_text(record, args.verbose), target, path, store)
    return 0


DEFAULT_DEMO = "nwifi-completion"


def _cmd_install_debugger_ext(args: argparse.Namespace) -> int:
    """The two lines to paste into WinDbg/CDB/KD (docs/windbg.md): pykd, then our JavaScript commands."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyext", "pytriage.js")
    if " " in script:
        print("pytriage: note: .scriptload does not accept paths with spaces; copy %s to a folder without "
              "spaces and load it from there" % script, file=sys.stderr)
    print(".load pykd")
    print(".scriptload %s" % script)
    return 0


def _cmd_live(args: argparse.Namespace) -> int:
    """A command on a live kernel over KDNET, through DbgEng (pybag; Windows): the debugger's own code path
    (pytriage.pyext.runner), with DbgEng attached by us instead of by WinDbg. The kernel is detached (it
    runs on) when the command ends, whatever happened."""
    from pytriage.pyext.runner import run
    from pytriage.target.pybag_target import PybagTarget

    command = "analyze" if args.live_command == "pytriage" else args.live_command
    attached = []

    def attach():
        attached.append(PybagTarget.attach_kdnet(args.kdnet))
        return attached[-1]

    try:
        return run(command, args.arguments, attach, out=sys.stderr,
                   prog="pytriage live %s" % args.live_command)      # not the KDNET key: it is a secret
    finally:
        for target in attached:
            target.close()


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
        _cmd_info(args)
        # The full triage, named through the PDBs the builder wrote beside the dump: what
        # `pytriage analyze` prints on a real dump with a symbol path.
        print("")
        print("Triage (pytriage analyze %s --symbols srv*%s):" % (os.path.basename(built.dump_path),
                                                                os.path.basename(built.symstore_path)))
        symbols = "srv*%s" % built.symstore_path
        _cmd_analyze(build_parser().parse_args(["analyze", built.dump_path, "--symbols", symbols]
                                               + (["--stats"] if args.stats else [])))
        demo_nbl = built.spec.nbl.demo if built.spec.nbl is not None else None
        if demo_nbl is not None:             # a scenario about NBLs shows its headline walk too
            address = built.nbl_addresses[demo_nbl]
            print("")
            print("NBL walk (pytriage nblwalk %s %s --symbols srv*%s):" % (
                os.path.basename(built.dump_path), format_address(address), os.path.basename(built.symstore_path)))
            _cmd_nblwalk(build_parser().parse_args(["nblwalk", built.dump_path, "%x" % address, "--symbols",
                                                    symbols]))
        return 0


def _cmd_scenario(args: argparse.Namespace) -> int:
    from pytriage.scenarios import build_from_file

    built = build_from_file(args.spec, args.output, dump_type=args.type)
    print(built.dump_path)
    print(built.symbols_path)
    print(built.symstore_path)          # PDBs + images: a symbol path for WinDbg/dbgeng (docs/scenarios.md)
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    """Every kernel dump under DIR triaged into OUT (docs/cli.md#batch); exit 130 after Ctrl-C."""
    from pytriage.batch.runner import run_batch, summary_lines
    from pytriage.batch.task import TaskOptions

    options = TaskOptions(symbols=args.symbols, timeout=args.timeout, memory_mb=args.memory_mb, engine=args.engine)
    summary = run_batch(args.dir, args.output, args.jobs, options, dask=args.dask, progress_stream=sys.stderr,
                        retry_failed=args.retry_failed)
    if summary.report_error:
        print("pytriage: error: reports not written: %s" % summary.report_error, file=sys.stderr)
    if summary.interrupted:
        print("interrupted: %d of %d dumps triaged; run again to finish" % (summary.with_result, summary.found),
              file=sys.stderr)
        return 130
    print("\n".join(summary_lines(summary)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytriage", description=(
        "Network-aware Windows kernel crash triage. Offline engine: reads full, bitmap and triage "
        "kernel dumps on any OS."))
    parser.add_argument("--version", action="version", version="pytriage %s" % __version__)
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks (for developers)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    symbols = argparse.ArgumentParser(add_help=False)
    symbols.add_argument("--symbols", metavar="PATH", default=None, help=(
        "symbol path, WinDbg syntax (srv*CACHE*URL; cache*DIR; DIR; ...); default: _NT_SYMBOL_PATH, "
        "else the local cache only (docs/symbols.md)"))
    output = argparse.ArgumentParser(add_help=False)       # the symbolized commands' two output switches
    output.add_argument("--json", action="store_true", help="print the JSON record (docs/cli.md)")
    output.add_argument("--stats", action="store_true", help="show target reads and symbol-store traffic")
    owners = argparse.ArgumentParser(add_help=False)       # who owns a pool tag: pooltag and nblwalk
    owners.add_argument("--scan", action="store_true", help="always scan loaded drivers' code for pool tags")
    owners.add_argument("--no-scan", action="store_true", help="never scan drivers' code for pool tags")
    owners.add_argument("--pooltag", metavar="FILE", help=(
        "your pooltag.txt (default: $PYTRIAGE_POOLTAG, then triage/pooltag.txt under $WINDBG_DIR)"))

    info = sub.add_parser("info", parents=[symbols], help="dump header facts, bugcheck, context and module list")
    info.add_argument("dump", help="kernel dump file (.dmp)")
    info.add_argument("--json", action="store_true", help="print the JSON record (docs/cli.md)")
    info.add_argument("--stats", action="store_true", help="show how many bytes were read from the target")
    info.set_defaults(func=_cmd_info)

    db = sub.add_parser("db", parents=[symbols], help="show memory bytes like WinDbg's db")
    db.add_argument("dump", help="kernel dump file")
    db.add_argument("address", type=_parse_address, help="address (hex; fffff804`7ba00000 style accepted)")
    db.add_argument("-l", "--length", type=lambda t: _parse_address(t) if not t.isdigit() else int(t),
                    default=0x80, help="bytes to show (default 0x80; decimal, or hex with 0x)")
    db.add_argument("--physical", action="store_true", help="ADDRESS is a physical address (db /p)")
    db.set_defaults(func=_cmd_db)

    sym = sub.add_parser("sym", parents=[symbols, output],
                         help="address -> module!symbol+0xoff, or name -> address (ln / x)")
    sym.add_argument("dump", help="kernel dump file")
    sym.add_argument("query", nargs="+", help="address (hex, backticks allowed) or module!symbol")
    sym.add_argument("-v", "--verbose", action="store_true", help="say where the module's symbols came from")
    sym.set_defaults(func=_cmd_sym)

    dt = sub.add_parser("dt", parents=[symbols, output], help="show a type layout, or a structure in the dump, like dt")
    dt.add_argument("dump", help="kernel dump file")
    dt.add_argument("type", help="type name: module!_TYPE or _TYPE (nt, then every module, then built-ins)")
    dt.add_argument("address", nargs="?", help="address of the structure (hex, or module!symbol)")
    dt.set_defaults(func=_cmd_dt)

    stack = sub.add_parser("stack", parents=[symbols, output],
                           help="the crashing thread's call stack, like WinDbg's k / kn")
    stack.add_argument("dump", help="kernel dump file")
    stack.add_argument("-n", dest="numbers", action="store_true", help="show frame numbers (the # column of kn)")
    stack.add_argument("--rip", type=_parse_address, help="start from this instruction pointer (with --rsp)")
    stack.add_argument("--rsp", type=_parse_address, help="start from this stack pointer (with --rip)")
    stack.add_argument("--rbp", type=_parse_address, help="frame pointer for the start (with --rip/--rsp)")
    stack.add_argument("--cxr", type=_parse_address, metavar="ADDRESS",
                       help="start from the CONTEXT record at ADDRESS, like .cxr (e.g. a 0x7E bugcheck's parameter 4)")
    stack.add_argument("--trap", type=_parse_address, metavar="ADDRESS",
                       help="start from the _KTRAP_FRAME at ADDRESS, like .trap (layout from nt's symbols)")
    stack.add_argument("--processor", type=int, metavar="N", help=(
        "start from processor N's KPRCB.Context, like ~Ns (triage dumps keep only the crashing processor's)"))
    stack.add_argument("--thread", type=_parse_address, metavar="ADDRESS", help=(
        "start from the thread (KTHREAD) at ADDRESS, like .thread: its processor's context when it was "
        "running, else the switch frame its KernelStack points to"))
    stack.add_argument("--max-frames", type=int, default=256, help="stop after this many frames (default 256)")
    stack.add_argument("--scan-unverified", action="store_true", help=(
        "when scanning for return addresses, also accept values whose preceding code is not available "
        "(marked 'call not verified'; finds more true frames and more false ones)"))
    stack.set_defaults(func=_cmd_stack)

    pooltag = sub.add_parser("pooltag", parents=[symbols, output, owners], help=(
        "who owns this memory: the pool allocation holding ADDRESS, the owners of a tag (-t), usage by tag (-s)"))
    pooltag.add_argument("dump", help="kernel dump file")
    pooltag.add_argument("address", nargs="?", help="address inside the allocation (hex, or module!symbol)")
    pooltag.add_argument("-t", "--tag", metavar="TAG", help="list the owners of TAG (Filt, 'Io', 0x746c6946)")
    pooltag.add_argument("-s", "--summary", action="store_true", help="pool usage by tag from nt!PoolTrackTable")
    pooltag.add_argument("--top", type=int, default=20, help="with -s: how many tags to show (default 20)")
    pooltag.add_argument("-v", "--verbose", action="store_true", help="also print the raw pool headers")
    pooltag.set_defaults(func=_cmd_pooltag)

    nblwalk = sub.add_parser("nblwalk", parents=[symbols, output, owners], help=(
        "walk a NET_BUFFER_LIST chain: NBLs, NET_BUFFERs, MDLs, packets, owners, DOT11 completion stacks"))
    nblwalk.add_argument("dump", help="kernel dump file")
    nblwalk.add_argument("address", help="address of the first NET_BUFFER_LIST (hex, or module!symbol)")
    nblwalk.add_argument("--max", type=int, default=1000, help="stop after this many NBLs (default 1000)")
    nblwalk.add_argument("--pcap", metavar="FILE", help="write every packet of the walk to FILE (pcapng)")
    nblwalk.add_argument("--dot11", action="store_true", help=(
        "decode nwifi's DOT11 completion stack of every NBL with a context (default: when nwifi is loaded)"))
    nblwalk.add_argument("--no-dot11", action="store_true", help="never decode DOT11 completion stacks")
    nblwalk.add_argument("--no-owners", action="store_true", help=(
        "do not look up whose memory the NBLs, pool handles and source handles are"))
    nblwalk.add_argument("--no-packets", action="store_true", help=(
        "do not read packet bytes (structures only: the fewest reads on a live target)"))
    nblwalk.add_argument("-v", "--verbose", action="store_true", help="also show MDLs and the first packet bytes")
    nblwalk.set_defaults(func=_cmd_nblwalk)

    analyze = sub.add_parser("analyze", parents=[symbols, output, owners], help=(
        "network-aware crash triage, the debugger's !pytriage: bugcheck, stack, forensics, pool and NBL evidence, "
        "the culprit driver with its confidence, !analyze-style and network buckets"))
    analyze.add_argument("dump", help="kernel dump file")
    analyze.add_argument("-v", "--verbose", action="store_true", help=(
        "show every piece of evidence: all forensic clues, all candidates, stack use per module"))
    analyze.add_argument("--triage-ini", metavar="FILE", help=(
        "your module list (which modules are Windows' own), added to the shipped one (docs/triage.md); "
        "default: $PYTRIAGE_TRIAGE_INI"))
    analyze.add_argument("--max-frames", type=int, default=64, help="frames to walk (default 64)")
    analyze.add_argument("--no-nbls", action="store_true", help=(
        "do not walk NBLs found in the failing frames' registers"))
    analyze.set_defaults(func=_cmd_analyze)

    ext = sub.add_parser("install-debugger-ext", help=(
        "print the two lines that add !pytriage, !pooltag and !nblwalk to WinDbg/CDB/KD (docs/windbg.md)"))
    ext.set_defaults(func=_cmd_install_debugger_ext)

    live = sub.add_parser("live", help=(
        "run !pytriage, !pooltag or !nblwalk on a live kernel over KDNET through DbgEng "
        "(Windows, pip install pytriage[dbgeng]; docs/windbg.md)"))
    live.add_argument("--kdnet", required=True, metavar="port=N,key=K", help=(
        "the KDNET connection, as for `windbg -k net:port=N,key=K` (the net: prefix is optional)"))
    live.add_argument("live_command", metavar="COMMAND", choices=("pytriage", "analyze", "pooltag", "nblwalk"),
                      help="pytriage (= analyze), pooltag or nblwalk")
    live.add_argument("arguments", nargs=argparse.REMAINDER, help=(
        "the command's arguments as in the debugger (no DUMP), e.g. `-v`, or an NBL address for nblwalk"))
    live.set_defaults(func=_cmd_live)

    demo = sub.add_parser("demo", help="build a built-in scenario dump in a temp dir and triage it")
    demo.add_argument("name", nargs="?", default=DEFAULT_DEMO, help="built-in scenario (see --list; default %s)"
                      % DEFAULT_DEMO)
    demo.add_argument("--list", action="store_true", help="list the built-in scenarios")
    demo.add_argument("--type", choices=("full", "bitmap"), default="bitmap", help="dump kind to write")
    demo.add_argument("--stats", action="store_true", help="show how many bytes were read from the target")
    demo.set_defaults(func=_cmd_demo)

    scen = sub.add_parser("scenario", help="build a dump, ISF tables and a symbol store (PDBs, images) from a JSON "
                                           "scenario spec; prints the three paths (docs/scenarios.md)")
    scen.add_argument("spec", help="scenario spec (.json) or the name of a built-in scenario")
    scen.add_argument("-o", "--output", default=".", help="output directory (default: current)")
    scen.add_argument("--type", choices=("full", "bitmap"), default="bitmap", help="dump kind to write")
    scen.set_defaults(func=_cmd_scenario)

    batch = sub.add_parser("batch", parents=[symbols], help=(
        "triage every kernel dump under a folder in parallel into a results database and reports; "
        "re-runs triage only new dumps"))
    batch.add_argument("dir", metavar="DIR", help="folder searched recursively for kernel dumps (found by signature, "
                                                  "not name)")
    batch.add_argument("-o", "--output", default="pytriage-batch", metavar="OUT", help=(
        "output folder: results.sqlite and the reports (default ./pytriage-batch)"))
    batch.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, metavar="N", help=(
        "dumps triaged at once, one worker process each (default: the number of CPUs, %(default)s here)"))
    batch.add_argument("--timeout", type=float, default=300.0, metavar="S", help=(
        "seconds per dump before its worker is killed and the dump reported as timeout (default 300)"))
    batch.add_argument("--memory-mb", type=int, default=4096, metavar="N", help=(
        "address-space cap per worker beyond the dump's own size, POSIX only (default 4096; 0: no cap)"))
    batch.add_argument("--engine", choices=("offline", "dbgeng"), default="offline", help=(
        "offline: pytriage's own dump reader (default); dbgeng: Microsoft's engine through pybag (Windows)"))
    batch.add_argument("--dask", metavar="ADDRESS", help=(
        "run the triage on a Dask distributed cluster (tcp://scheduler:8786) instead of local workers"))
    batch.add_argument("--retry-failed", action="store_true", help=(
        "triage again the dumps whose stored result is error, timeout or crashed (say, with a larger --timeout); "
        "by default a stored failure is kept"))
    batch.set_defaults(func=_cmd_batch)
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
