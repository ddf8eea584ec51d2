"""A loaded module's image read by RVA: from the dump's memory, or from the image file in a symbol store.

Unwinding needs a module's exception directory, its UNWIND_INFO and a few code bytes. Full and bitmap
dumps usually hold the image pages; triage dumps (and paged-out pages) do not, and then the image file
the symbol store has for the module's TimeDateStamp/SizeOfImage carries the same bytes at the same
RVAs (``.pdata`` and ``.text`` are not relocated). Headers are parsed with pefile in both cases; reads
fail with ``UnwindError`` (image file) or ``MemoryReadError`` (dump memory) naming what is missing.
"""

import os
import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

import pefile

from pytriage.errors import MemoryReadError, UnwindError
from pytriage.target.model import Module

IMAGE_FILE_MACHINE_AMD64 = 0x8664
IMAGE_DIRECTORY_ENTRY_EXCEPTION = 3
IMAGE_SCN_MEM_EXECUTE = 0x20000000
MAX_HEADER_BYTES = 0x1000
MAX_IMAGE_FILE_BYTES = 256 << 20      # ntoskrnl is ~11 MB; refuse anything absurd


@dataclass(frozen=True)
class Section:
    name: str
    rva: int
    size: int                 # virtual size
    characteristics: int

    @property
    def executable(self) -> bool:
        return bool(self.characteristics & IMAGE_SCN_MEM_EXECUTE)

    def contains(self, rva: int) -> bool:
        return self.rva <= rva < self.rva + self.size


@dataclass
class ImageHeaders:
    """What the unwinder needs from a PE header: machine, identity, sections, exception directory."""
    machine: int
    timestamp: int
    size_of_image: int
    size_of_headers: int
    sections: List[Section]
    exception_directory: Tuple[int, int]     # (rva, size); size 0: the image has no .pdata
    file_layout: List[Tuple[int, int, int, int]]   # (rva, virtual size, file offset, raw size) per section

    def section_at(self, rva: int) -> Optional[Section]:
        return next((s for s in self.sections if s.contains(rva)), None)


def parse_headers(data: bytes, where: str) -> ImageHeaders:
    """pefile on the header bytes (the first page, or as much of it as the DOS/NT headers and section
    table need); ``UnwindError`` if it is no x64 PE header."""
    # (no pe.close(): with data= there is no file to release, and close() runs a full garbage collection)
    try:
        pe = pefile.PE(data=data, fast_load=True)
    except (pefile.PEFormatError, ValueError, IndexError, struct.error) as exc:     # hostile bytes stay one error
        raise UnwindError("%s: not a PE header (%s)" % (where, exc)) from None
    try:
        machine = pe.FILE_HEADER.Machine
        opt = pe.OPTIONAL_HEADER
        directories = opt.DATA_DIRECTORY
        exception = (0, 0)
        if len(directories) > IMAGE_DIRECTORY_ENTRY_EXCEPTION:
            entry = directories[IMAGE_DIRECTORY_ENTRY_EXCEPTION]
            exception = (entry.VirtualAddress, entry.Size)
        sections = [Section(s.Name.rstrip(b"\0").decode("latin-1"), s.VirtualAddress,
                            max(s.Misc_VirtualSize, s.SizeOfRawData), s.Characteristics) for s in pe.sections]
        raw = [(s.VirtualAddress, max(s.Misc_VirtualSize, s.SizeOfRawData), s.PointerToRawData, s.SizeOfRawData)
               for s in pe.sections]
        headers = ImageHeaders(machine, pe.FILE_HEADER.TimeDateStamp, opt.SizeOfImage, opt.SizeOfHeaders,
                               sections, exception, raw)
    except AttributeError as exc:          # pefile leaves out what it could not parse
        raise UnwindError("%s: incomplete PE header (%s)" % (where, exc)) from None
    if machine != IMAGE_FILE_MACHINE_AMD64:
        raise UnwindError("%s: machine 0x%04x is not x64; only x64 unwind data is read" % (where, machine))
    return headers


class ImageSource:
    """Reads RVAs of one module's image; ``origin`` says where from (for notes and ``--json``)."""

    origin = ""
    headers: ImageHeaders

    def read(self, rva: int, size: int) -> bytes:
        raise NotImplementedError


class MemoryImage(ImageSource):
    """The image as the dump maps it at the module's base (reads go through the target's page cache)."""

    def __init__(self, target, module: Module) -> None:
        self.target = target
        self.module = module
        self.origin = "dump memory"
        self.headers = parse_headers(self._header_bytes(), "%s's headers in dump memory" % module.debugger_name)

    def _header_bytes(self) -> bytes:
        base = self.module.base
        try:
            return self.target.read(base, MAX_HEADER_BYTES)
        except MemoryReadError:
            pass
        # A triage dump may keep just the start of the header page: read exactly what the headers span.
        dos = self.target.read(base, 0x40)
        if dos[:2] != b"MZ":
            raise UnwindError("%s: no MZ header at the module base" % self.module.debugger_name, base)
        e_lfanew = struct.unpack_from("<I", dos, 0x3C)[0]
        if not 0x40 <= e_lfanew <= MAX_HEADER_BYTES - 0x18:
            raise UnwindError("%s: e_lfanew 0x%x is outside the header page" % (self.module.debugger_name, e_lfanew),
                              base)
        file_header = self.target.read(base + e_lfanew, 0x18)
        sections, optional_size = struct.unpack_from("<H12xH", file_header, 6)
        span = e_lfanew + 0x18 + optional_size + 0x28 * sections
        if span > MAX_HEADER_BYTES:
            raise UnwindError("%s: headers of 0x%x bytes do not fit in a page" % (self.module.debugger_name, span),
                              base)
        return self.target.read(base, span)

    def read(self, rva: int, size: int) -> bytes:
        if rva < 0 or rva + size > self.module.size:
            raise UnwindError("rva 0x%x+0x%x is outside %s (0x%x bytes)"
                              % (rva, size, self.module.debugger_name, self.module.size))
        return self.target.read(self.module.base + rva, size)


class DeferredImage(ImageSource):
    """An image file fetched from the symbol path only when a read needs it (the dump usually has the
    bytes: a lookup, a download, reading and parsing a file are then saved). ``fetch`` returns the
    ``FileImage`` or raises ``UnwindError`` saying why there is none; that answer is kept."""

    def __init__(self, fetch) -> None:
        self._fetch = fetch
        self._image: Optional[FileImage] = None
        self._error: Optional[str] = None

    def resolve(self) -> "FileImage":
        if self._image is None and self._error is None:
            try:
                self._image = self._fetch()
            except UnwindError as exc:
                self._error = str(exc)
        if self._image is None:
            raise UnwindError(self._error or "no image file")
        return self._image

    @property
    def problem(self) -> Optional[str]:
        return self._error

    @property
    def origin(self) -> str:                                 # type: ignore[override]
        return self._image.origin if self._image is not None else "image file from the symbol path"

    @property
    def headers(self) -> ImageHeaders:                       # type: ignore[override]
        return self.resolve().headers

    def read(self, rva: int, size: int) -> bytes:
        return self.resolve().read(rva, size)


class FileImage(ImageSource):
    """The module's image file (from the symbol store), read through its section table."""

    def __init__(self, path: str, module: Module) -> None:
        self.path = path
        self.origin = "image file %s" % path
        try:
            size = os.path.getsize(path)
            if size > MAX_IMAGE_FILE_BYTES:
                raise UnwindError("%s is 0x%x bytes, more than an image can be" % (path, size))
            with open(path, "rb") as fh:
                self.data = fh.read()
        except OSError as exc:
            raise UnwindError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
        self.headers = parse_headers(self.data[:MAX_HEADER_BYTES], path)
        if (self.headers.timestamp, self.headers.size_of_image) != (module.timestamp, module.size):
            raise UnwindError("%s is TimeDateStamp 0x%08x SizeOfImage 0x%x, the dump's %s is 0x%08x 0x%x: not used"
                              % (path, self.headers.timestamp, self.headers.size_of_image, module.debugger_name,
                                 module.timestamp or 0, module.size))
        self._raw = self.headers.file_layout

    def read(self, rva: int, size: int) -> bytes:
        if rva + size <= self.headers.size_of_headers:
            return self.data[rva:rva + size]
        for start, vsize, offset, raw in self._raw:
            if start <= rva and rva + size <= start + vsize:
                inside = rva - start
                chunk = self.data[offset + inside:offset + min(raw, inside + size)] if inside < raw else b""
                if offset + min(raw, inside + size) > len(self.data):
                    raise UnwindError("%s is truncated: rva 0x%x is past its end" % (self.path, rva))
                return chunk + bytes(size - len(chunk))       # past the raw data: zero-filled, as mapped
        raise UnwindError("rva 0x%x+0x%x is in no section of %s" % (rva, size, self.path))
