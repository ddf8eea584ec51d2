"""CONTEXT records (x64 and ARM64) -> an ordered register dictionary."""

from typing import Dict, Union

from pytriage.dump import structs as S
from pytriage.errors import UnsupportedDumpError


def parse_context(buf: Union[bytes, memoryview], machine: str, offset: int = 0, base: int = 0) -> Dict[str, int]:
    """Registers of a CONTEXT at ``buf[offset:]``; ``base`` only positions error messages."""
    if machine == "AMD64":
        raw = S.CONTEXT_AMD64.parse(buf, offset, base)
        return {name: int(raw[name]) for name in S.AMD64_REGISTER_ORDER}  # type: ignore[arg-type]
    if machine == "ARM64":
        raw = S.CONTEXT_ARM64.parse(buf, offset, base)
        return {name: int(value) for name, value in raw.items()}  # type: ignore[arg-type]
    raise UnsupportedDumpError("no CONTEXT layout for machine type %s" % machine)


def instruction_pointer(registers: Dict[str, int]) -> int:
    return registers.get("rip", registers.get("pc", 0))


def stack_pointer(registers: Dict[str, int]) -> int:
    return registers.get("rsp", registers.get("sp", 0))
