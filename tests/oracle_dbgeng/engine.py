"""Run Microsoft's debugger engine (dbgeng.dll under wine, ../shared/tools/dbgeng-wine) and parse what
it prints for the built-in commands we compare with: vertarget, .bugcheck, r, lm, db, dq, and with a
symbol path x, ln, dt and dt -v; for stacks k/kn/kvn, .frame /r and .trap.

The parsers are strict: a line they do not recognise where they expect data raises, so a change in the
engine's output shows up as a test failure instead of an empty comparison that passes.
"""

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_SH = os.path.join(os.path.dirname(REPO), "shared", "tools", "dbgeng-wine", "run.sh")

_CMD = re.compile(r"^### DBGHOST CMD: (.*)$")
_END = re.compile(r"^### DBGHOST END: hr=(0x[0-9a-fA-F]{8})$")


class EngineError(RuntimeError):
    pass


@dataclass
class CommandOutput:
    command: str
    text: str
    hr: int

    @property
    def lines(self) -> List[str]:
        return [line for line in self.text.splitlines() if line.strip()]


def run_engine(dump_path: str, commands: List[str], timeout: int = 300,
               sympath: Optional[str] = None) -> List[CommandOutput]:
    """Open ``dump_path`` in dbgeng and run ``commands`` in one session; their outputs, in order."""
    env = dict(os.environ, DBGHOST_QUIET_OPEN="1", DBGHOST_TIMEOUT=str(timeout))
    if sympath:
        env["DBGHOST_SYMPATH"] = sympath
    proc = subprocess.run([RUN_SH, dump_path] + commands, capture_output=True, text=True, errors="replace",
                          env=env, timeout=timeout + 60)
    if proc.returncode not in (0, 1):
        raise EngineError("dbgeng could not open %s (exit %d): %s%s"
                          % (dump_path, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    outputs: List[CommandOutput] = []
    current: Optional[str] = None
    body: List[str] = []
    for line in proc.stdout.splitlines():
        m = _CMD.match(line)
        if m:
            current, body = m.group(1), []
            continue
        m = _END.match(line)
        if m and current is not None:
            outputs.append(CommandOutput(current, "\n".join(body), int(m.group(1), 16)))
            current = None
            continue
        if current is not None:
            body.append(line)
    if [o.command for o in outputs] != list(commands):
        raise EngineError("dbgeng ran %s, expected %s:\n%s"
                          % ([o.command for o in outputs], commands, proc.stdout[-3000:]))
    return outputs


def _hex(text: str) -> int:
    return int(text.replace("`", ""), 16)


def parse_vertarget(out: CommandOutput) -> Dict[str, object]:
    facts: Dict[str, object] = {}
    for line in out.lines:
        if " Kernel Version " in line:
            facts["version_line"] = line.strip()
        m = re.match(r"^Kernel base = (0x[0-9a-f`]+) PsLoadedModuleList = (0x[0-9a-f`]+)$", line.strip())
        if m:
            facts["kernel_base"] = _hex(m.group(1))
            facts["ps_loaded_module_list"] = _hex(m.group(2))
        if line.startswith("Debug session time: "):
            facts["session_time"] = line[len("Debug session time: "):].strip()
        if line.startswith("System Uptime: "):
            facts["uptime"] = line[len("System Uptime: "):].strip()
        if line.startswith("Built by: "):
            facts["built_by"] = line[len("Built by: "):].strip()
    for key in ("version_line", "kernel_base", "session_time", "uptime"):
        if key not in facts:
            raise EngineError("vertarget output lacks %s:\n%s" % (key, out.text))
    return facts


def parse_bugcheck(out: CommandOutput) -> Tuple[int, List[int]]:
    code = args = None
    for line in out.lines:
        m = re.match(r"^Bugcheck code ([0-9A-Fa-f]{8})$", line.strip())
        if m:
            code = int(m.group(1), 16)
        if line.startswith("Arguments "):
            args = [_hex(a) for a in line.split()[1:]]
    if code is None or args is None or len(args) != 4:
        raise EngineError(".bugcheck output not understood:\n%s" % out.text)
    return code, args


_REG = re.compile(r"\b([a-z][a-z0-9]{0,5})=([0-9a-f]+)\b")


GPRS = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rip", "rsp", "rbp", "r8", "r15"}


def parse_registers(out: CommandOutput, needed=frozenset(GPRS | {"cs", "efl"})) -> Dict[str, int]:
    """`r` on x64: the three-per-line GPRs, segment registers and efl (`.trap` shows no segments)."""
    regs: Dict[str, int] = {}
    for line in out.lines:
        if line.startswith(("iopl=",)) or ":" in line.split("=")[0]:
            continue
        for name, value in _REG.findall(line):
            regs[name] = int(value, 16)
    if not needed <= set(regs):
        raise EngineError("r output lacks %s:\n%s" % (sorted(needed - set(regs)), out.text))
    return regs


def parse_lm(out: CommandOutput) -> List[Tuple[int, int, str]]:
    """(start, end, module name) for every loaded module."""
    rows = []
    for line in out.lines:
        if line.startswith("start ") or line.startswith("Unloaded modules:"):
            if line.startswith("Unloaded"):
                break
            continue
        m = re.match(r"^([0-9a-f]{8}`[0-9a-f]{8}) ([0-9a-f]{8}`[0-9a-f]{8})\s+(\S+)", line)
        if not m:
            raise EngineError("lm line not understood: %r" % line)
        rows.append((_hex(m.group(1)), _hex(m.group(2)), m.group(3)))
    return rows


def parse_db(out: CommandOutput) -> Tuple[int, bytes]:
    """Start address and bytes of a `db` (or `db /p`) listing; ``??`` bytes end the data."""
    start: Optional[int] = None
    data = bytearray()
    for line in out.lines:
        m = re.match(r"^(?:#)?([0-9a-f]{8}`[0-9a-f]{8}|[0-9a-f]+)\s\s(.*)$", line)
        if not m:
            raise EngineError("db line not understood: %r" % line)
        if start is None:
            start = _hex(m.group(1))
        cells = m.group(2)[:48].replace("-", " ").split()
        for cell in cells:
            if cell == "??":
                return start, bytes(data)
            data.append(int(cell, 16))
    if start is None:
        raise EngineError("db printed nothing:\n%s" % out.text)
    return start, bytes(data)


def parse_dq(out: CommandOutput) -> List[int]:
    values: List[int] = []
    for line in out.lines:
        parts = line.split()
        if not re.match(r"^[0-9a-f]{8}`[0-9a-f]{8}$", parts[0]):
            raise EngineError("dq line not understood: %r" % line)
        for cell in parts[1:]:
            if "?" in cell:
                return values
            values.append(_hex(cell))
    return values


# --- symbol commands (need the scenario's symbol store as the symbol path) ---------------------------

_ADDR = r"([0-9a-f]{8}`[0-9a-f]{8})"
_X_LINE = re.compile(r"^" + _ADDR + r" ([A-Za-z0-9_]+)!(\S+) (\(.*\)|= <no type information>)$")


def parse_x(out: CommandOutput) -> List[Tuple[str, int, str, str]]:
    """`x module!*`: (module, address, name, "function" or "data") per line (a function shows its
    parameters, ``(<no parameter info>)`` for a public, data ``= <no type information>``)."""
    rows = []
    for line in out.lines:
        m = _X_LINE.match(line)
        if not m:
            raise EngineError("x line not understood: %r" % line)
        kind = "function" if m.group(4).startswith("(") else "data"
        rows.append((m.group(2), _hex(m.group(1)), m.group(3), kind))
    return rows


_LN_SYM = r"\(" + _ADDR + r"\)\s+([A-Za-z0-9_]+)!(\S+?)(?:\+0x([0-9a-f]+))?"
_LN_FIRST = re.compile(r"^" + _LN_SYM + r"(?:\s+\|\s+" + _LN_SYM + r")?\s*$")
_LN_EXACT = re.compile(r"^\s+([A-Za-z0-9_]+)!(\S+) (\(<no parameter info>\)|= <no type information>)$")


# What the engine says under wine about images it cannot map (README of the tool): not about the answer.
_IMAGE_NOISE = ("Unable to change protection for image", "*** WARNING: Unable to verify timestamp for ",
                "*** ERROR: Module load completed but symbols could not be loaded for ")


def without_image_noise(lines: List[str]) -> List[str]:
    return [line for line in lines if not line.startswith(_IMAGE_NOISE)]


def parse_ln(out: CommandOutput) -> Tuple[int, str, int]:
    """`ln addr`: (symbol start, "module!name", offset of addr in it) of the nearest symbol below."""
    lines = without_image_noise(out.lines)
    if not lines:
        raise EngineError("ln printed nothing")
    m = _LN_FIRST.match(lines[0])
    if not m:
        raise EngineError("ln line not understood: %r" % lines[0])
    rest = lines[1:]
    if rest:
        if rest[0] != "Exact matches:" or not all(_LN_EXACT.match(line) for line in rest[1:]) or len(rest) < 2:
            raise EngineError("ln output not understood:\n%s" % out.text)
    return _hex(m.group(1)), "%s!%s" % (m.group(2), m.group(3)), int(m.group(4) or "0", 16)


_DT_MEMBER = re.compile(r"^   \+0x([0-9a-f]+) (\S+)\s*: (.*)$")
_DT_HEADER = re.compile(r"^(struct|union) (\S+), (\d+) elements, 0x([0-9a-f]+) bytes$")


_DT_SUMMARY = re.compile(r'^ (\[ .* \]|".*")$')


def dt_summary(out: CommandOutput) -> Optional[str]:
    """The line `dt _LIST_ENTRY addr` / `dt _UNICODE_STRING addr` prints before the members, if any."""
    lines = out.lines
    return lines[0].strip() if lines and _DT_SUMMARY.match(lines[0]) else None


def parse_dt_members(out: CommandOutput) -> List[Tuple[int, str, str]]:
    """`dt type [addr]`: (offset, member, the text after the colon) for every line (a summary line
    before them, see dt_summary, is skipped)."""
    rows = []
    lines = out.lines
    for line in lines[1:] if dt_summary(out) is not None else lines:
        m = _DT_MEMBER.match(line)
        if not m:
            raise EngineError("dt line not understood: %r" % line)
        rows.append((int(m.group(1), 16), m.group(2), m.group(3).strip()))
    if not rows:
        raise EngineError("dt printed no members:\n%s" % out.text)
    return rows


def parse_dt_layout(out: CommandOutput) -> Tuple[str, str, int, int, List[Tuple[int, str, str]]]:
    """`dt -v type`: (struct/union, name, element count, size, members as in parse_dt_members)."""
    lines = out.lines
    m = _DT_HEADER.match(lines[0]) if lines else None
    if not m:
        raise EngineError("dt -v header not understood:\n%s" % out.text)
    members = parse_dt_members(CommandOutput(out.command, "\n".join(lines[1:]), out.hr))
    return m.group(1), m.group(2), int(m.group(3)), int(m.group(4), 16), members


def dt_number(text: str) -> int:
    """An integer member value as dt prints it: 0x-prefixed hex (backticks allowed), or one decimal digit."""
    m = re.match(r"^(?:0x([0-9a-f`]+)|([0-9]))$", text)
    if not m:
        raise EngineError("dt value is not a number: %r" % text)
    return _hex(m.group(1)) if m.group(1) else int(m.group(2))


def dt_pointer(text: str) -> int:
    """A `Ptr64 Void` member value: ``0xfffff804`70000000 Void``."""
    m = re.match(r"^0x([0-9a-f`]+) Void$", text)
    if not m:
        raise EngineError("dt pointer value not understood: %r" % text)
    return _hex(m.group(1))


def dt_unicode_string(text: str) -> str:
    m = re.match(r'^_UNICODE_STRING "(.*)"$', text)
    if not m:
        raise EngineError("dt _UNICODE_STRING value not understood: %r" % text)
    return m.group(1)


# --- stacks -----------------------------------------------------------------------------------------------

_K_LINE = re.compile(r"^([0-9a-f]{2,}) " + _ADDR + " " + _ADDR + r"(?: : (?:[0-9a-f]{8}`[0-9a-f]{8} ){4}:)? (.+?)"
                     r"(?: \(TrapFrame @ " + _ADDR + r"\))?$")


@dataclass
class StackFrame:
    number: int
    child_sp: int
    return_address: int
    call_site: str
    trap_frame: Optional[int] = None


def parse_k(out: CommandOutput) -> List[StackFrame]:
    """`kn` / `kvn`: one StackFrame per line (the `kv` arguments are read past, "TrapFrame @" is kept)."""
    frames = []
    for line in without_image_noise(out.lines):
        if line.startswith(" # Child-SP") or line.strip().startswith("*** Stack trace for last set context"):
            continue
        m = _K_LINE.match(line)
        if not m:
            raise EngineError("k line not understood: %r" % line)
        frames.append(StackFrame(int(m.group(1), 16), _hex(m.group(2)), _hex(m.group(3)), m.group(4),
                                 _hex(m.group(5)) if m.group(5) else None))
    if not frames:
        raise EngineError("k printed no frames:\n%s" % out.text)
    return frames


def parse_frame_registers(out: CommandOutput) -> Tuple[StackFrame, Dict[str, int]]:
    """`.frame /r N`: the frame's `k` line and the registers as the engine unwound them for it."""

    lines = without_image_noise(out.lines)
    if not lines:
        raise EngineError(".frame printed nothing")
    frame = parse_k(CommandOutput(out.command, lines[0], out.hr))[0]
    return frame, parse_registers(CommandOutput(out.command, "\n".join(lines[1:]), out.hr))
