"""The MSF 7.00 container ("Microsoft C/C++ MSF 7.00"): a file of fixed-size blocks holding numbered streams.

Why lazy: a kernel PDB is tens of MB and the symbolizer typically asks a handful of questions of it. The
file is memory-mapped, the stream directory (a few KB) is read and validated at open, and a stream's
bytes are only copied out of the map when a reader asks for a range of them. A stream is scattered over
blocks in any order; :class:`MsfStream` turns (offset, length) into block reads, with a fast path when
the stream's blocks happen to be consecutive in the file (common for streams written in one go).

Layout (see llvm.org/docs/PDB/MsfFile.html): block 0 holds the superblock (magic, block size, free block
map block, number of blocks, directory size, block map address). The block at ``BlockMapAddr`` lists the
blocks of the stream directory; the directory is ``NumStreams``, every stream's byte size, then every
stream's block numbers in stream order. A size of 0xFFFFFFFF marks a deleted ("nil") stream.

Everything a hostile file can get wrong (block size, block numbers past the end, stream sizes that need
more blocks than listed, directory sizes past the file) is a :class:`SymbolError` naming the file and
what was wrong, raised at open for the directory and at first read for a stream.
"""

import mmap
import struct
from typing import Dict, List, Optional, Sequence, Tuple

from pytriage.errors import SymbolError

MSF_MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0"
_SUPERBLOCK = struct.Struct("<32s6I")     # magic, BlockSize, FreeBlockMapBlock, NumBlocks, NumDirectoryBytes,
#                                           Unknown, BlockMapAddr
VALID_BLOCK_SIZES = (512, 1024, 2048, 4096)
NIL_STREAM_SIZE = 0xFFFFFFFF
NIL_STREAM_INDEX = 0xFFFF               # what 16-bit stream index fields hold for "no stream"

# Well-known stream numbers.
STREAM_PDB = 1
STREAM_TPI = 2
STREAM_DBI = 3
STREAM_IPI = 4


def _blocks_for(size: int, block_size: int) -> int:
    return (size + block_size - 1) // block_size


class MsfStream:
    """One stream: ``size`` bytes scattered over ``blocks`` of the file, read on demand.

    ``label`` names the stream in error messages (``"TPI stream (2)"``). Reads outside ``[0, size)``
    raise ``SymbolError``; they mean a reader followed a bad offset or length from the file.
    """

    def __init__(self, msf: "MsfFile", index: int, size: int, blocks: Sequence[int], label: str) -> None:
        self._msf = msf
        self.index = index
        self.size = size
        self.label = label
        self._blocks = blocks
        self._block_size = msf.block_size
        # Consecutive blocks: the stream is one slice of the file.
        self._contiguous_base: Optional[int] = None
        if blocks and all(blocks[i] == blocks[0] + i for i in range(1, len(blocks))):
            self._contiguous_base = blocks[0] * self._block_size

    def error(self, offset: int, what: str) -> SymbolError:
        """A one-line error naming the file, this stream and the offset in it."""
        return SymbolError("%s: %s at offset 0x%x: %s" % (self._msf.path, self.label, offset, what))

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``; short reads are errors (the file promised this many)."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self.error(offset, "read of %d bytes past the end of the stream (%d bytes)" % (length, self.size))
        data = self._msf.data
        if self._contiguous_base is not None:
            start = self._contiguous_base + offset
            return data[start:start + length]
        block_size = self._block_size
        parts: List[bytes] = []
        while length > 0:
            block, within = divmod(offset, block_size)
            take = min(length, block_size - within)
            start = self._blocks[block] * block_size + within
            parts.append(data[start:start + take])
            offset += take
            length -= take
        return b"".join(parts)

    def read_all(self, limit: int = 1 << 30) -> bytes:
        """The whole stream, for the small ones (info, DBI header, section headers, hash tables)."""
        if self.size > limit:
            raise self.error(0, "stream of %d bytes is larger than the %d this reader accepts" % (self.size, limit))
        return self.read(0, self.size)

    def unpack(self, fmt: struct.Struct, offset: int) -> Tuple:
        return fmt.unpack(self.read(offset, fmt.size))


class MsfFile:
    """A memory-mapped MSF file: superblock and stream directory validated, streams opened on request."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = None
        self.data: Optional[mmap.mmap] = None
        try:
            self._file = open(path, "rb")
            self._file.seek(0, 2)
            file_size = self._file.tell()
            if file_size < _SUPERBLOCK.size:
                raise SymbolError("%s: not a PDB (MSF 7.00) file: %d bytes, too short for the superblock"
                                  % (path, file_size))
            self.data = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            self.close()
            raise SymbolError("%s: cannot open PDB: %s" % (path, exc.strerror or exc)) from None
        except (SymbolError, ValueError) as exc:
            self.close()
            if isinstance(exc, SymbolError):
                raise
            raise SymbolError("%s: cannot map PDB: %s" % (path, exc)) from None
        try:
            self.file_size = file_size
            self._read_superblock()
            self._read_directory()
        except BaseException:
            self.close()
            raise
        self._streams: Dict[int, MsfStream] = {}

    # -- open ------------------------------------------------------------------------------------------------
    def _bad(self, what: str) -> SymbolError:
        return SymbolError("%s: corrupt MSF container: %s" % (self.path, what))

    def _read_superblock(self) -> None:
        assert self.data is not None
        (magic, block_size, fpm_block, num_blocks, dir_bytes, _unknown,
         block_map_addr) = _SUPERBLOCK.unpack_from(self.data, 0)
        if magic != MSF_MAGIC:
            if self.data[:37] == b"Microsoft C/C++ program database 2.00":
                raise SymbolError("%s: PDB 2.00 (pre-2000 format) is not supported, only MSF 7.00" % self.path)
            raise SymbolError("%s: not a PDB file (no \"Microsoft C/C++ MSF 7.00\" signature)" % self.path)
        if block_size not in VALID_BLOCK_SIZES:
            raise self._bad("block size %d at offset 0x20 (must be 512, 1024, 2048 or 4096)" % block_size)
        self.block_size = block_size
        if num_blocks == 0 or num_blocks * block_size > self.file_size:
            raise self._bad("superblock says %d blocks of %d bytes (%d bytes) but the file has %d bytes "
                            "(truncated?)" % (num_blocks, block_size, num_blocks * block_size, self.file_size))
        self.num_blocks = num_blocks
        if fpm_block not in (1, 2):
            raise self._bad("free block map block %d at offset 0x24 (must be 1 or 2)" % fpm_block)
        if dir_bytes < 4 or dir_bytes > num_blocks * block_size:
            raise self._bad("stream directory size %d at offset 0x2c" % dir_bytes)
        dir_blocks = _blocks_for(dir_bytes, block_size)
        if dir_blocks * 4 > block_size:
            raise self._bad("stream directory of %d bytes needs %d blocks, more than one block map block "
                            "can list" % (dir_bytes, dir_blocks))
        if block_map_addr == 0 or block_map_addr >= num_blocks:
            raise self._bad("block map address %d at offset 0x34 (file has %d blocks)" % (block_map_addr, num_blocks))
        start = block_map_addr * block_size
        self._dir_blocks = struct.unpack_from("<%dI" % dir_blocks, self.data, start)
        for number in self._dir_blocks:
            if number == 0 or number >= num_blocks:
                raise self._bad("stream directory block %d (file has %d blocks)" % (number, num_blocks))
        self._dir_bytes = dir_bytes

    def _read_directory(self) -> None:
        assert self.data is not None
        bs = self.block_size
        raw = b"".join(self.data[b * bs:(b + 1) * bs] for b in self._dir_blocks)[:self._dir_bytes]
        num_streams = struct.unpack_from("<I", raw, 0)[0]
        if 4 + 4 * num_streams > len(raw):
            raise self._bad("directory lists %d streams but has only %d bytes" % (num_streams, len(raw)))
        sizes = struct.unpack_from("<%dI" % num_streams, raw, 4)
        counts = [0 if size == NIL_STREAM_SIZE else _blocks_for(size, bs) for size in sizes]
        total = sum(counts)
        need = 4 + 4 * num_streams + 4 * total
        if need > len(raw):
            raise self._bad("directory of %d bytes is too short for the block lists of %d streams "
                            "(needs %d bytes)" % (len(raw), num_streams, need))
        numbers = struct.unpack_from("<%dI" % total, raw, 4 + 4 * num_streams)
        if numbers and max(numbers) >= self.num_blocks:
            stream = self._owner_of(counts, numbers.index(max(numbers)))
            raise self._bad("stream %d uses block %d but the file has %d blocks"
                            % (stream, max(numbers), self.num_blocks))
        self.num_streams = num_streams
        self._sizes = sizes
        self._block_lists: List[Tuple[int, ...]] = []
        pos = 0
        for count in counts:
            self._block_lists.append(numbers[pos:pos + count])
            pos += count

    @staticmethod
    def _owner_of(counts: Sequence[int], position: int) -> int:
        for stream, count in enumerate(counts):
            if position < count:
                return stream
            position -= count
        return -1

    # -- streams ---------------------------------------------------------------------------------------------
    def stream_size(self, index: int) -> Optional[int]:
        """Byte size of stream ``index``, or None for a nil or absent stream."""
        if index < 0 or index >= self.num_streams or self._sizes[index] == NIL_STREAM_SIZE:
            return None
        return self._sizes[index]

    def has_stream(self, index: int) -> bool:
        return self.stream_size(index) is not None

    def stream(self, index: int, label: str = "") -> MsfStream:
        """Stream ``index``; ``label`` says what the caller expects it to be, for error messages."""
        if self.data is None:
            raise SymbolError("%s: PDB file is closed" % self.path)
        cached = self._streams.get(index)
        if cached is not None:
            return cached
        name = "%s (%d)" % (label, index) if label else "stream %d" % index
        if index < 0 or index >= self.num_streams:
            raise SymbolError("%s: %s does not exist (the PDB has %d streams)" % (self.path, name, self.num_streams))
        size = self._sizes[index]
        if size == NIL_STREAM_SIZE:
            raise SymbolError("%s: %s is a deleted (nil) stream" % (self.path, name))
        stream = MsfStream(self, index, size, self._block_lists[index], name)
        self._streams[index] = stream
        return stream

    def close(self) -> None:
        if self.data is not None:
            try:
                self.data.close()
            except BufferError:       # a view is still alive somewhere; the GC unmaps it later
                pass
            self.data = None
        if self._file is not None:
            self._file.close()
            self._file = None
