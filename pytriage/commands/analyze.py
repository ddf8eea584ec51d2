"""`!pytriage` / `pytriage analyze`: the triage record as text laid out like `!analyze -v`.

The sections an engineer knows from ``!analyze -v`` come first and keep their names (the bugcheck with
Arg1..Arg4, BUGCHECK_CODE, FAULTING_IP, STACK_TEXT, SYMBOL_NAME, MODULE_NAME, IMAGE_NAME,
FAILURE_BUCKET_ID), so the output can replace it; what ``!analyze`` lacks follows: the culprit with its
confidence and evidence, the network bucket, the chain of reasoning, the forensic findings, the pool and
NBL evidence, what the dump could not show, next commands and remedies. ``-v`` adds every clue, every
candidate and the per-module stack usage. JSON: the engine's record as is (docs/json-schema.md).
"""

import os
from typing import List, Optional

from tabulate import tabulate

from pytriage.commands.render import windbg_address
from pytriage.errors import PytriageError

X64_REQUIRED = "the triage walks x64 stacks and structures"
ENGINES = ("offline", "dbgeng")

BANNER = ["*" * 79, "*%s*" % (" " * 77), "*%s*" % "pytriage network-aware bugcheck analysis".center(77),
          "*%s*" % (" " * 77), "*" * 79]


def _addr(text) -> str:
    """``0xfffff80470001000`` (JSON form) -> ``fffff804`70001000``."""
    return windbg_address(text) if text else "?"


def _short(text: str, width: int = 110) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _bugcheck_lines(record: dict) -> List[str]:
    bugcheck = record["bugcheck"]
    code = int(bugcheck["code"], 16)
    lines = ["%s (%x)" % (bugcheck["name"], code), bugcheck["summary"], "Arguments:"]
    for p in bugcheck["parameters"]:
        detail = " -- %s" % p["detail"] if p["detail"] else ""
        lines.append("Arg%d: %s, %s%s" % (p["index"], _addr(p["value"]).replace("`", ""), p["name"], detail))
    return lines


def _details(record: dict) -> List[str]:
    failure = record["failure"]
    buckets = record["buckets"]
    lines = ["", "Debugging Details:", "------------------", ""]
    lines.append("BUGCHECK_CODE:  %x" % int(record["bugcheck"]["code"], 16))
    for p in record["bugcheck"]["parameters"]:
        lines.append("BUGCHECK_P%d: %x" % (p["index"], int(p["value"], 16)))
    if failure["trap_frame"]:
        lines.append("TRAP_FRAME:  %s -- (.trap 0x%s)" % (_addr(failure["trap_frame"]),
                                                           failure["trap_frame"][2:]))
    if failure["faulting_ip"]:
        lines += ["", "FAULTING_IP:", failure["faulting_symbol"] or _addr(failure["faulting_ip"])]
    stack = record["stack"]
    if stack is not None:
        lines += ["", "STACK_TEXT:"]
        for frame in stack["frames"]:
            ret = _addr(frame["return_address"]) if frame.get("return_address") else "????????`????????"
            mark = " (TrapFrame @ %s)" % _addr(frame["trap_frame"]) if frame.get("trap_frame") else ""
            cls = "" if frame["class"] in ("core", "network", "inbox") else "  <-- %s" % frame["class"]
            lines.append("%02x %s %s %s%s%s" % (frame["number"], _addr(frame["child_sp"]), ret, frame["call_site"],
                                                mark, cls))
        if not stack.get("complete", True):
            stop = stack.get("stop") or {}
            lines.append("(walk stopped: %s)" % (stop.get("text") or stop.get("reason") or "?"))
    lines += ["", "SYMBOL_NAME:  %s" % (failure["call_site"] or "?"),
              "MODULE_NAME: %s" % (failure["module"] or "?"), "IMAGE_NAME:  %s" % (failure["image"] or "?"),
              "FAILURE_BUCKET_ID:  %s" % buckets["failure_bucket_id"]]
    return lines


def _culprit(record: dict) -> List[str]:
    culprit = record["culprit"]
    buckets = record["buckets"]
    lines = ["", "pytriage verdict:", "-----------------", ""]
    if culprit is None:
        lines.append("CULPRIT:  none named (confidence low)")
    else:
        role = ", %s" % culprit["role"] if culprit["role"] else ""
        lines.append("CULPRIT:  %s (%s%s) -- confidence %s" % (culprit["binary"], culprit["class"], role,
                                                               culprit["confidence"]))
        if culprit["base"]:
            lines.append("          base %s, timestamp %s" % (_addr(culprit["base"]), culprit["timestamp"] or "?"))
    lines.append("NETWORK_BUCKET_ID:  %s" % buckets["network_bucket_id"])
    lines.append("FAILURE_BUCKET_ID:  %s" % buckets["failure_bucket_id"])
    lines += ["", "REASONING:"]
    lines += ["  %d. %s" % (n, step) for n, step in enumerate(record["reasoning"], 1)]
    if culprit is not None and culprit["evidence"]:
        lines += ["", "EVIDENCE (%s):" % culprit["binary"]]
        rows = [(e["weight"], e["source"], _short(e["text"], 100)) for e in culprit["evidence"]]
        lines += ["  " + line for line in tabulate(rows, headers=("weight", "source", "evidence"),
                                                    tablefmt="simple").splitlines()]
    return lines


def _forensics(record: dict, verbose: bool) -> List[str]:
    clues = [c for c in record["forensics"] if verbose or c["severity"] != "info"]
    if not clues:
        return []
    rows = [(c["subject"], _addr(c["value"]), c["severity"], _short(c["text"], 90)) for c in clues]
    return ["", "FORENSICS:"] + ["  " + line for line in tabulate(
        rows, headers=("value of", "value", "", "finding"), tablefmt="simple").splitlines()]


def _pool(record: dict) -> List[str]:
    if not record["pool"]:
        return []
    lines = ["", "POOL:"]
    for entry in record["pool"]:
        lines.append("  %s" % (entry.get("summary") or "%s: %s" % (entry["subject"], entry.get("error"))))
        for finding in entry.get("findings", []):
            lines.append("    %s: %s" % (finding["kind"], finding["text"]))
        for culprit in entry.get("culprit_owners", []):
            owners = ", ".join(dict.fromkeys("%s (%s)" % (o["binary"], o["source"]) for o in culprit["owners"])) \
                or "unknown"
            lines.append("    overrunning tag %s: %s" % (culprit["tag"], owners))
    return lines


def _network(record: dict, verbose: bool) -> List[str]:
    network = record["network"]
    lines = []
    for role in network["roles"]:
        lines.append("  %s: %s (%s)" % (role["binary"], role["role"], role["evidence"]))
    for pattern in network["patterns"]:
        lines.append("  pattern %s: %s" % (pattern["name"], pattern["text"]))
    for nbl in network["nbls"]:
        lines.append("  NBL %s (%s): %s" % (_addr(nbl["address"]), nbl["subject"], nbl["verdict"] or "looks sane"))
        for item in nbl["walk"]["nbls"][:1]:
            dot11 = item.get("dot11")
            if dot11:
                lines.append("    DOT11 pBOS %s pTOS %s%s" % (_addr(dot11["pBOS"]), _addr(dot11["pTOS"]),
                                                             "" if dot11["healthy"] else " (corrupt)"))
                for entry in dot11["entries"]:
                    if not entry["ok"] or verbose:
                        lines.append("    entry %s pRoutine %s: %s" % (_addr(entry["address"]),
                                                                     _addr(entry["pRoutine"]), entry["routine"]))
    usage = network.get("stack_usage")
    if usage and (verbose or usage.get("exhausted")):
        used = usage["used"]
        lines.append("  kernel stack: %s of 0x%x bytes used%s" % ("0x%x" % used if used is not None else "?",
                                                                  usage["size"],
                                                                  " (exhausted)" if usage.get("exhausted") else ""))
        lines.append("    by module: " + ", ".join("%s 0x%x" % (m["binary"], m["bytes"])
                                                   for m in usage["by_module"][:6]))
    return ["", "NETWORK PATH:"] + lines if lines else []


def render_text(record: dict, verbose: bool = False) -> List[str]:
    lines = list(BANNER) + [""] + _bugcheck_lines(record) + _details(record) + _culprit(record)
    lines += _forensics(record, verbose) + _pool(record) + _network(record, verbose)
    if verbose and record["candidates"]:
        rows = [(c["binary"], c["class"], c["score"]) for c in record["candidates"]]
        lines += ["", "CANDIDATES:"] + ["  " + line for line in tabulate(
            rows, headers=("binary", "class", "score"), tablefmt="simple").splitlines()]
        rows = [(e["binary"], e["weight"], e["source"], e["text"]) for e in record["evidence"]]
        lines += ["", "ALL EVIDENCE:"] + ["  " + line for line in tabulate(
            rows, headers=("binary", "weight", "source", "evidence"), tablefmt="simple").splitlines()]
    if record["unavailable"]:
        lines += ["", "UNAVAILABLE (lowers confidence where marked in the culprit's evidence):"]
        lines += ["  - %s" % item for item in record["unavailable"]]
    lines += ["", "NEXT COMMANDS:"] + ["  %s" % c for c in record["next_commands"]]
    lines += ["", "REMEDIES:"] + ["  - %s" % r for r in record["remedies"]]
    return lines


def open_symbolizer(target, symbols: Optional[str], progress: bool = False):
    """(Symbolizer, SymbolPath, SymbolStore) for ``target``: the symbol path ``symbols`` (WinDbg syntax), else
    ``_NT_SYMBOL_PATH``, else the local cache only. ``progress``: show downloads on stderr."""
    from pytriage.symbols.store import SymbolStore
    from pytriage.symbols.symbolizer import Symbolizer
    from pytriage.symbols.sympath import resolve_symbol_path

    path = resolve_symbol_path(symbols)
    store = SymbolStore(path, progress=progress)
    local_dirs: List[str] = []
    for element in path.elements:
        local_dirs.extend(d.path for d in element.dirs if d.path not in local_dirs)
    return Symbolizer(target, store=store, isf_dirs=local_dirs), path, store


def open_target(dump_path: str, engine: str = "offline"):
    """The dump as a Target: pytriage's own reader (``offline``), or DbgEng through pybag (``dbgeng``)."""
    if engine == "offline":
        from pytriage.target.offline import OfflineDumpTarget
        return OfflineDumpTarget.open(dump_path)
    if engine == "dbgeng":
        from pytriage.target.pybag_target import PybagTarget
        return PybagTarget.open_dump(dump_path)
    raise PytriageError("unknown engine %r (have: %s)" % (engine, ", ".join(ENGINES)))


def analyze_dump(dump_path: str, symbols: Optional[str] = None, engine: str = "offline", classifier=None,
                 options=None, progress_stream=None) -> dict:
    """``pytriage analyze DUMP --json`` as a function: open, symbolize, triage, close; the record.

    The batch worker calls this once per dump; ``classifier`` (default: the shipped list plus
    ``$PYTRIAGE_TRIAGE_INI``) can be loaded once and passed in."""
    from pytriage.analysis.triage.engine import triage
    from pytriage.analysis.triage.modules import load_classifier

    target = open_target(dump_path, engine)
    try:
        if target.machine != "AMD64":
            raise PytriageError("%s; this dump is %s" % (X64_REQUIRED, target.machine))
        symbolizer, _, _ = open_symbolizer(target, symbols)
        try:
            record = triage(target, symbolizer, classifier if classifier is not None else load_classifier(),
                            options, progress_stream=progress_stream)
        finally:
            symbolizer.close()
    finally:
        target.close()
    record["dump"]["path"] = os.path.basename(dump_path)
    return record
