"""`FakeTarget`: memory and facts given as plain Python data, for unit tests of analysis code."""

from typing import Dict, List, Optional, Tuple

from pytriage.errors import MemoryReadError
from pytriage.target.base import Target
from pytriage.target.model import Module


class FakeTarget(Target):
    def __init__(self, memory: Optional[Dict[int, bytes]] = None, modules: Optional[List[Module]] = None,
                 bugcheck: Tuple[int, Tuple[int, int, int, int]] = (0, (0, 0, 0, 0)),
                 registers: Optional[Dict[str, int]] = None) -> None:
        super().__init__()
        self._bytes: Dict[int, int] = {}
        for base, data in (memory or {}).items():
            for i, b in enumerate(data):
                self._bytes[base + i] = b
        self._modules = modules or []
        self._bugcheck = bugcheck
        self._registers = registers or {}

    def _read_backend(self, va: int, size: int) -> bytes:
        out = bytearray()
        for i in range(size):
            value = self._bytes.get(va + i)
            if value is None:
                raise MemoryReadError(va + i, "not in the fake target")
            out.append(value)
        return bytes(out)

    def modules(self) -> List[Module]:
        return self._modules

    def bugcheck(self) -> Tuple[int, Tuple[int, int, int, int]]:
        return self._bugcheck

    def context_record(self) -> Dict[str, int]:
        return dict(self._registers)
