"""A small, lazy, pure-Python PDB reader (MSF 7.00 container, info/DBI/TPI/publics/globals streams).

Why we write it ourselves instead of using an existing reader:

* ``pdbparse`` (PyPI) is GPL-licensed (pytriage is MIT), pinned to an old ``construct`` API, and parses
  whole streams eagerly, so opening a kernel PDB decodes tens of MB of records to answer one question.
* volatility3's MSF/PDB code is bound to its framework (layers, contexts, its symbol-table builder) and
  cannot be used as a library without pulling the framework in.
* The debugger-side code path runs inside the debugger's embedded Python 3.9 with no third-party
  packages, so this reader is stdlib-only and 3.9-clean.

What it reads, one module per job: :mod:`.msf` (container, lazily assembled streams over an mmap),
:mod:`.info` (GUID/age, named streams), :mod:`.dbi` (stream numbers, section headers, OMAP, modules),
:mod:`.tpi` (type records by index and by name through the TPI hash), :mod:`.gsi` (publics and
globals through their hash tables and the address map), :mod:`.codeview` (leaf constants, numeric
leaves, the PDB name hash) and :mod:`.reader` (``PdbFile``, the ``SymbolSource``). The format
references used were LLVM's PDB documentation (llvm.org/docs/PDB/) and Microsoft's published
``cvinfo.h``; no code was taken from other readers. Oracle in the tests: ``llvm-pdbutil dump``.
"""

from pytriage.symbols.pdb.reader import PdbFile, open_pdb

__all__ = ["PdbFile", "open_pdb"]
