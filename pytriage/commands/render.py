"""Shared rendering helpers: WinDbg-style numbers and stable JSON."""

import json
from typing import Any

from pytriage.errors import format_address

__all__ = ["format_address", "hex64", "to_json_text", "format_uptime"]


def hex64(value: int) -> str:
    """JSON form of a 64-bit value: fixed-width lower-case hex string (JSON numbers lose 64-bit precision)."""
    return "0x%016x" % (value & 0xFFFFFFFFFFFFFFFF)


def to_json_text(record: Any) -> str:
    return json.dumps(record, indent=2, sort_keys=False, ensure_ascii=True)


def format_uptime(seconds: float) -> str:
    """`0 days 0:00:03.747` like vertarget's "System Uptime"."""
    millis = int(round(seconds * 1000))
    days, millis = divmod(millis, 86400000)
    hours, millis = divmod(millis, 3600000)
    minutes, millis = divmod(millis, 60000)
    secs, millis = divmod(millis, 1000)
    return "%d days %d:%02d:%02d.%03d" % (days, hours, minutes, secs, millis)
