"""Shared rendering helpers: WinDbg-style numbers and stable JSON."""

import json
from typing import Any

from pytriage.errors import format_address

__all__ = ["format_address", "hex64", "windbg_address", "to_json_text", "format_uptime", "windows_version_line"]

# (first build, product) as WinDbg's vertarget names them; Windows 11 still reports "Windows 10".
_PRODUCTS = [(10240, "Windows 10"), (9600, "Windows 8.1"), (9200, "Windows 8"), (7600, "Windows 7"),
             (6000, "Windows Vista"), (3790, "Windows Server 2003"), (2600, "Windows XP")]
_ARCH = {"AMD64": "x64", "ARM64": "ARM64", "I386": "x86"}


def hex64(value: int) -> str:
    """JSON form of a 64-bit value: fixed-width lower-case hex string (JSON numbers lose 64-bit precision)."""
    return "0x%016x" % (value & 0xFFFFFFFFFFFFFFFF)


def windbg_address(json_value: Any) -> str:
    """A record's address (``0xffffc08be0001000``, or an int) as WinDbg shows it: ``ffffc08b`e0001000``."""
    return format_address(int(str(json_value), 16))


def to_json_text(record: Any) -> str:
    return json.dumps(record, indent=2, sort_keys=False, ensure_ascii=True)


def format_uptime(seconds: float) -> str:
    """`0 days 0:00:03.747` like vertarget's "System Uptime": milliseconds truncated, as the engine does
    (the header counts 100 ns units, so the float is first rounded to those)."""
    millis = int(round(seconds * 10000000)) // 10000
    days, millis = divmod(millis, 86400000)
    hours, millis = divmod(millis, 3600000)
    minutes, millis = divmod(millis, 60000)
    secs, millis = divmod(millis, 1000)
    return "%d days %d:%02d:%02d.%03d" % (days, hours, minutes, secs, millis)


def windows_version_line(build: int, major_version: int, processors: int, machine: str) -> str:
    """`Windows 10 Kernel Version 19041 MP (4 procs) Free x64`, as WinDbg's vertarget prints it.

    The header's MajorVersion is not the Windows version: 0xF marks a free build, 0xC a checked one.
    """
    product = next((name for first, name in _PRODUCTS if build >= first), "Windows")
    flavour = {0xF: "Free", 0xC: "Checked"}.get(major_version, "MajorVersion 0x%x" % major_version)
    # a uniprocessor target is just "UP": the engine prints no "(1 procs)" (checked under dbgeng)
    kind = "MP (%d procs)" % processors if processors > 1 else "UP"
    return "%s Kernel Version %d %s %s %s" % (product, build, kind, flavour, _ARCH.get(machine, machine))
