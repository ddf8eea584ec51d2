"""A module's exception directory: which RUNTIME_FUNCTION covers an RVA, and its UNWIND_INFO.

The ``.pdata`` entries are sorted by BeginAddress, so a lookup is a binary search that reads only the
entries it visits (about 17 for ntoskrnl's 35,000), each through the image source: a few pages of the
dump, never the whole table. A module may have several sources (dump memory first, then the image
file from the symbol store); each read is served by the first source that has the bytes, so a
``.pdata`` page missing from the dump is read from the file.

``UnwindCatalog`` keeps one table per module (or the reason there is none) for a whole walk.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from pytriage.analysis.image_reader import DeferredImage, FileImage, ImageHeaders, ImageSource, MemoryImage
from pytriage.analysis.unwind_codes import (
    HEADER_SIZE,
    RUNTIME_FUNCTION_SIZE,
    RuntimeFunction,
    UnwindInfo,
    decode_unwind_info,
    unwind_info_size,
)
from pytriage.errors import MemoryReadError, PytriageError, UnwindError
from pytriage.target.model import Module

MAX_CHAIN = 32                  # chained UNWIND_INFO levels followed before calling it a loop


def read_sources(module: Module, sources: List[ImageSource], rva: int, size: int,
                 used: Optional[List[ImageSource]] = None) -> bytes:
    """``size`` bytes at ``rva`` of ``module`` from the first source that has them (recorded in ``used``);
    ``UnwindError`` naming every source's problem otherwise."""
    problems = []
    for source in sources:
        try:
            data = source.read(rva, size)
        except (MemoryReadError, UnwindError) as exc:
            problems.append("%s: %s" % (source.origin, exc))
            continue
        if len(data) == size:
            if used is not None and source not in used:
                used.append(source)
            return data
        problems.append("%s: short read" % source.origin)
    raise UnwindError("%s+0x%x (0x%x bytes) is not readable: %s"
                      % (module.debugger_name, rva, size, "; ".join(problems) or "no image source"))


class FunctionTable:
    """RUNTIME_FUNCTION lookups and UNWIND_INFO for one module, read from ``sources`` in order."""

    def __init__(self, module: Module, sources: List[ImageSource]) -> None:
        if not sources:
            raise ValueError("a function table needs at least one image source")
        self.module = module
        self.sources = sources
        self.headers: ImageHeaders = sources[0].headers
        self.directory_rva, directory_size = self.headers.exception_directory
        self.count = directory_size // RUNTIME_FUNCTION_SIZE
        self._entries: Dict[int, RuntimeFunction] = {}
        self._infos: Dict[int, UnwindInfo] = {}
        self.used: List[ImageSource] = []       # the sources that served a read, in first-use order

    @property
    def origin(self) -> str:
        return ", then ".join(s.origin for s in self.sources)

    def read(self, rva: int, size: int) -> bytes:
        """``size`` bytes at ``rva`` from the first source that has them; ``UnwindError`` otherwise."""
        return read_sources(self.module, self.sources, rva, size, self.used)

    def entry(self, index: int) -> RuntimeFunction:
        found = self._entries.get(index)
        if found is None:
            found = RuntimeFunction.parse(self.read(self.directory_rva + index * RUNTIME_FUNCTION_SIZE,
                                                    RUNTIME_FUNCTION_SIZE))
            self._entries[index] = found
        return found

    def lookup(self, rva: int) -> Optional[RuntimeFunction]:
        """The entry whose [begin, end) holds ``rva``; None when no function covers it (a leaf)."""
        lo, hi = 0, self.count - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            entry = self.entry(mid)
            if rva < entry.begin:
                hi = mid - 1
            elif rva >= entry.end:
                lo = mid + 1
            else:
                return entry
        return None

    def unwind_info(self, function: RuntimeFunction) -> UnwindInfo:
        rva = function.unwind_rva
        found = self._infos.get(rva)
        if found is None:
            header = self.read(rva, HEADER_SIZE)
            data = self.read(rva, unwind_info_size(header))
            found = decode_unwind_info(data, rva, self.module.base)
            self._infos[rva] = found
        return found

    def chain(self, function: RuntimeFunction) -> List[Tuple[RuntimeFunction, UnwindInfo]]:
        """The function's UNWIND_INFO followed by every chained (primary) one, innermost first."""
        out: List[Tuple[RuntimeFunction, UnwindInfo]] = []
        seen = set()
        current: Optional[RuntimeFunction] = function
        while current is not None:
            if current.unwind_rva & 1 and current.unwind_rva not in seen:
                # RUNTIME_FUNCTION_INDIRECT: the entry's unwind RVA points at another RUNTIME_FUNCTION
                seen.add(current.unwind_rva)
                current = RuntimeFunction.parse(self.read(current.unwind_rva & ~1, RUNTIME_FUNCTION_SIZE))
                continue
            if current.unwind_rva in seen or len(out) >= MAX_CHAIN:
                raise UnwindError("%s: chained unwind info of the function at rva 0x%x loops"
                                  % (self.module.debugger_name, function.begin), self.module.base + function.begin)
            seen.add(current.unwind_rva)
            info = self.unwind_info(current)
            out.append((current, info))
            current = info.chained
        return out


@dataclass
class ModuleImage:
    """What the walk can read of one module: its image sources, and its function table if ``.pdata`` is
    readable (``reason`` says why not otherwise)."""
    module: Module
    sources: List[ImageSource]
    table: Optional[FunctionTable]
    reason: str = ""

    @property
    def headers(self) -> Optional[ImageHeaders]:
        return self.sources[0].headers if self.sources else None

    @property
    def origin(self) -> str:
        return ", then ".join(s.origin for s in self.sources)

    def is_executable(self, rva: int) -> Optional[bool]:
        """Whether ``rva`` is in an executable section; None without headers."""
        headers = self.headers
        if headers is None:
            return None
        section = headers.section_at(rva)
        return section is not None and section.executable


class UnwindCatalog:
    """Image sources and function tables for every module of a target, built once per module.

    ``store`` (a ``SymbolStore``, optional) supplies image files by TimeDateStamp/SizeOfImage when the
    dump does not hold a module's headers or ``.pdata``.
    """

    def __init__(self, target, store=None) -> None:
        self.target = target
        self.store = store
        self._images: Dict[int, ModuleImage] = {}

    def image(self, module: Module) -> ModuleImage:
        found = self._images.get(module.base)
        if found is None:
            found = self._images[module.base] = self._load(module)
        return found

    def table(self, module: Module) -> Optional[FunctionTable]:
        return self.image(module).table

    def reason(self, module: Module) -> str:
        return self.image(module).reason

    def read_code(self, module: Module, rva: int, size: int) -> bytes:
        """Code bytes of ``module``: its image sources, else dump memory even without headers (triage
        dumps keep small blocks around return addresses). ``UnwindError`` if nothing has them."""
        image = self.image(module)
        try:
            return read_sources(module, image.sources, rva, size)
        except UnwindError:
            if any(isinstance(s, MemoryImage) for s in image.sources):
                raise
        try:
            return self.target.read(module.base + rva, size)
        except MemoryReadError as exc:
            raise UnwindError("%s+0x%x is not readable: %s" % (module.debugger_name, rva, exc)) from None

    def _load(self, module: Module) -> ModuleImage:
        sources: List[ImageSource] = []
        problems: List[str] = []
        try:
            sources.append(MemoryImage(self.target, module))
        except (MemoryReadError, UnwindError):
            problems.append("its headers are not in the dump")
        deferred = DeferredImage(lambda: self._image_file(module))
        if not sources:                         # the headers must come from the file: fetch it now
            try:
                deferred.resolve()
            except UnwindError:
                pass
        if deferred.problem is None:
            sources.append(deferred)
        else:
            problems.append(deferred.problem)
        if not sources:
            return ModuleImage(module, sources, None, "%s has no unwind data: %s"
                               % (module.debugger_name, "; ".join(problems)))
        table = FunctionTable(module, sources)
        if table.count:
            try:
                table.entry(0)
            except UnwindError:
                problems.insert(0, "its exception directory (.pdata at rva 0x%x) is not in the dump"
                                % table.directory_rva)
                if deferred.problem is not None and deferred.problem not in problems:
                    problems.append(deferred.problem)
                return ModuleImage(module, [s for s in sources if s is not deferred or deferred.problem is None],
                                   None, "%s has no unwind data: %s" % (module.debugger_name, "; ".join(problems)))
        return ModuleImage(module, sources, table)

    def _image_file(self, module: Module) -> FileImage:
        """The module's image file from the symbol path; ``UnwindError`` saying why there is none."""
        if self.store is None:
            raise UnwindError("no symbol path to fetch %s from" % module.name)
        if not module.timestamp or not module.size:
            raise UnwindError("the dump gives no TimeDateStamp/SizeOfImage to fetch %s by" % module.name)
        key = "%08X%x" % (module.timestamp, module.size)
        try:
            path = self.store.find_image(module.name, module.timestamp, module.size)
        except PytriageError as exc:
            raise UnwindError("%s %s: %s" % (module.name, key, exc)) from None
        if not path:
            raise UnwindError("%s %s is not on the symbol path" % (module.name, key))
        return FileImage(path, module)
