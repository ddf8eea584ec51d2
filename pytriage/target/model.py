"""Plain data the Target interface hands to analysis code: modules and read statistics."""

import ntpath
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")
KERNEL_IMAGES = ("ntoskrnl.exe", "ntkrnlmp.exe", "ntkrnlpa.exe", "ntkrpamp.exe")


@dataclass
class Module:
    """A loaded kernel module as `lm` shows it."""
    name: str                 # image file name: "tcpip.sys"
    base: int
    size: int
    timestamp: Optional[int] = None
    checksum: Optional[int] = None
    image_path: str = ""      # full path as the loader recorded it
    debugger_name: str = ""   # WinDbg's module name: "nt", "tcpip", "Wdf01000"

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, va: int) -> bool:
        return self.base <= va < self.base + self.size

    def to_json(self) -> Dict[str, object]:
        return {
            "name": self.name,
            "module": self.debugger_name,
            "base": "0x%016x" % self.base,
            "end": "0x%016x" % self.end,
            "size": "0x%x" % self.size,
            "timestamp": None if self.timestamp is None else "0x%08x" % self.timestamp,
            "checksum": None if self.checksum is None else "0x%08x" % self.checksum,
            "image_path": self.image_path,
        }


def debugger_module_name(image_name: str, is_kernel: bool) -> str:
    """WinDbg's short module name: "nt" for the kernel image, else the file stem as an identifier."""
    if is_kernel or image_name.lower() in KERNEL_IMAGES:
        return "nt"
    stem = ntpath.splitext(image_name)[0] or image_name
    return _NOT_IDENT.sub("_", stem)


def make_module(image_path: str, base: int, size: int, timestamp: Optional[int], checksum: Optional[int],
                index: int, base_name: str = "") -> Module:
    name = base_name or ntpath.basename(image_path) or image_path
    return Module(name=name, base=base, size=size, timestamp=timestamp, checksum=checksum,
                  image_path=image_path, debugger_name=debugger_module_name(name, index == 0))


@dataclass
class ReadStats:
    """What a command cost the target: shown by ``--stats``; the debugger's reads are the slow ones."""
    read_calls: int = 0          # reads that reached the backend
    bytes_read: int = 0          # bytes the backend returned
    cache_hits: int = 0          # page reads served from the cache
    failed_reads: int = 0

    def to_json(self) -> Dict[str, int]:
        return {"read_calls": self.read_calls, "bytes_read": self.bytes_read,
                "cache_hits": self.cache_hits, "failed_reads": self.failed_reads}


@dataclass
class ModuleList:
    """Modules plus what went wrong while listing them (partial results are still useful)."""
    modules: List[Module] = field(default_factory=list)
    source: str = ""
    warnings: List[str] = field(default_factory=list)
