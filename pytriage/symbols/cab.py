"""Expanding the CAB archives a symbol store keeps compressed files in (``name.pd_``).

Why two expanders: ``cabarchive`` (pure Python) expands the stored and MSZIP forms. LZX-compressed
CABs, which older Microsoft stores contain, are handed to ``cabextract`` (Linux, macOS) or
``expand.exe`` (Windows) when one is on PATH. We do not write our own LZX decoder: it is a large,
intricate algorithm whose bugs produce silently corrupt PDBs (wrong offsets, wrong names) rather than
errors; Microsoft's public server hands out uncompressed files anyway, and the existing tools are
mature, so an explicit "install cabextract" error (:class:`MissingExpanderError`) is the safer trade.
"""

import ntpath
import os
import shutil
import struct
import subprocess
import tempfile
from typing import List, Optional, Set, Tuple

from pytriage.errors import SymbolError
from pytriage.symbols.store_files import atomic_write, is_inside

#: Seconds an external CAB expander (cabextract, expand.exe) may run.
EXPANDER_TIMEOUT = 600.0

_CAB_NONE, _CAB_MSZIP, _CAB_QUANTUM, _CAB_LZX = 0, 1, 2, 3


class MissingExpanderError(SymbolError):
    """A CAB needs LZX/Quantum and neither cabextract nor expand.exe is on PATH.

    Its own class so a downloaded archive is kept (installing the tool then needs no new download).
    """


def cab_summary(data: bytes) -> Tuple[Set[int], List[Tuple[str, int]]]:
    """(compression types of the folders, [(member name, size)]) from a CAB header, without expanding it.

    Read before expanding so we can refuse an archive larger than ``max_bytes`` and pick the right
    expander (cabarchive cannot do LZX) without decompressing anything.
    """
    if len(data) < 36 or data[:4] != b"MSCF":
        raise ValueError("not a CAB archive (no MSCF signature)")
    coff_files = struct.unpack_from("<I", data, 16)[0]
    n_folders, n_files, flags = struct.unpack_from("<HHH", data, 26)
    offset = 36
    folder_reserve = 0
    if flags & 0x0004:
        header_reserve, folder_reserve, _data_reserve = struct.unpack_from("<HBB", data, 36)
        offset = 40 + header_reserve
    for present in (flags & 0x0001, flags & 0x0002):  # previous / next cabinet: two strings each
        if present:
            for _ in range(2):
                end = data.index(b"\x00", offset)
                offset = end + 1
    types = set()
    for _ in range(n_folders):
        types.add(struct.unpack_from("<IHH", data, offset)[2] & 0x000F)
        offset += 8 + folder_reserve
    members = []
    offset = coff_files
    for _ in range(n_files):
        size = struct.unpack_from("<I", data, offset)[0]
        end = data.index(b"\x00", offset + 16, offset + 16 + 257)
        members.append((data[offset + 16:end].decode("utf-8", "replace"), size))
        offset = end + 1
    return types, members


def expand_cab(source: str, dest: str, name: str, max_bytes: int) -> None:
    """Expand the CAB ``source`` (a ``name_`` store file) into ``dest`` (atomically).

    Nothing larger than ``max_bytes`` is read or written: the archive, and the member as its header
    declares it, are checked before anything is decompressed.
    """
    label = os.path.basename(source)
    size = os.path.getsize(source)
    if size > max_bytes:
        raise SymbolError("%s is larger than the %d-byte limit" % (source, max_bytes))
    with open(source, "rb") as fh:
        data = fh.read()
    try:
        types, members = cab_summary(data)
    except (ValueError, struct.error) as exc:
        raise SymbolError("%s: corrupt compressed symbol file: %s" % (source, exc))
    member = _pick_member([member for member, _ in members], name)
    if member is None:
        raise SymbolError("%s: compressed symbol file holds %d files, none named %s" % (source, len(members), name))
    member_size = dict(members)[member]
    if member_size > max_bytes:
        raise SymbolError(
            "%s: expands to %d bytes, over the %d-byte limit" % (source, member_size, max_bytes)
        )
    if types - {_CAB_NONE, _CAB_MSZIP}:
        _expand_external(source, dest, name, label, types, max_bytes)
        return
    import cabarchive  # imported here: only needed for compressed stores

    try:
        archive = cabarchive.CabArchive(data)
        buf = archive[member].buf or b""
    except Exception as exc:  # a hostile CAB may break the parser in any way; report, never crash
        raise SymbolError("%s: cannot expand compressed symbol file: %s" % (source, exc or type(exc).__name__))
    if len(buf) != member_size:
        raise SymbolError("%s: expanded to %d bytes, header says %d" % (source, len(buf), member_size))
    atomic_write(dest, lambda out: out.write(buf))


def _expand_external(source: str, dest: str, name: str, label: str, types: Set[int], max_bytes: int) -> None:
    """Expand with cabextract / expand.exe in a scratch directory beside ``dest``, then move the member in."""
    method = "LZX" if _CAB_LZX in types else ("Quantum" if _CAB_QUANTUM in types else "compression type %s" % types)
    tool = _external_expander()
    if tool is None:
        raise MissingExpanderError(
            "%s is %s-compressed, which cabarchive cannot expand: install cabextract (Linux/macOS) "
            "or put expand.exe (Windows) on PATH" % (label, method)
        )
    tool_name, exe = tool
    workdir = tempfile.mkdtemp(prefix=".pytriage-x-", dir=os.path.dirname(dest))
    try:
        if tool_name == "cabextract":
            command = [exe, "-q", "-d", workdir, source]
        else:
            command = [exe, source, "-F:*", workdir]
        try:
            result = subprocess.run(command, capture_output=True, timeout=EXPANDER_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SymbolError("%s: %s failed: %s" % (label, tool_name, exc))
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).decode("utf-8", "replace").strip().splitlines()
            raise SymbolError(
                "%s: %s exited with status %d%s"
                % (label, tool_name, result.returncode, (": " + detail[-1]) if detail else "")
            )
        produced = []
        for folder, _dirs, files in os.walk(workdir):
            for entry in files:
                path = os.path.join(folder, entry)
                if os.path.isfile(path) and not os.path.islink(path) and is_inside(workdir, path):
                    produced.append(path)
        chosen = _pick_member(produced, name) if len(produced) != 1 else produced[0]
        if chosen is None:
            raise SymbolError("%s: %s produced %d files, none named %s" % (label, tool_name, len(produced), name))
        if os.path.getsize(chosen) > max_bytes:
            raise SymbolError("%s: expands to more than the %d-byte limit" % (label, max_bytes))
        os.replace(chosen, dest)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _pick_member(members: List[str], name: str) -> Optional[str]:
    """The archive member to use: the only one, or the one whose basename is ``name`` (any case)."""
    if len(members) == 1:
        return members[0]
    folded = name.casefold()
    for member in members:
        if ntpath.basename(member.replace("/", "\\")).casefold() == folded:
            return member
    return None


def _external_expander() -> Optional[Tuple[str, str]]:
    """(tool name, executable) of an LZX-capable CAB expander on PATH, or None.

    On Windows only ``expand.exe`` is looked for, elsewhere only ``cabextract``: the Unix ``expand``
    command converts tabs and must never be mistaken for Microsoft's.
    """
    if os.name == "nt":
        exe = shutil.which("expand.exe")
        return ("expand.exe", exe) if exe else None
    exe = shutil.which("cabextract")
    return ("cabextract", exe) if exe else None
