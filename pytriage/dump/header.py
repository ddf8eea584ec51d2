"""Identify a dump file and parse its header into plain facts.

Why a separate step: `pytriage info` must print the header of any kernel dump, including kinds whose
memory we do not read (ARM64, 32-bit, RDMP, kernel summary), and must recognise files that are not
kernel dumps at all (a user-mode "MDMP" minidump) with a sentence a user understands.
"""

import datetime
from typing import Dict, Optional

from pytriage.dump import structs as S
from pytriage.dump.filemap import DumpFile
from pytriage.errors import DumpFormatError

_FILETIME_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)
_UNIX_EPOCH_FILETIME = 116444736000000000            # 1970-01-01 in FILETIME ticks (100 ns since 1601)


class DumpHeader:
    """Facts from DUMP_HEADER64 / DUMP_HEADER32.

    ``fields`` keeps every raw field by its Windows name; the attributes are the ones analysis uses.
    """

    def __init__(self, fields: Dict[str, object], is64: bool) -> None:
        self.fields = fields
        self.is64 = is64
        self.major_version = int(fields["MajorVersion"])  # type: ignore[arg-type]
        self.build = int(fields["MinorVersion"])  # type: ignore[arg-type]
        self.machine_type = int(fields["MachineImageType"])  # type: ignore[arg-type]
        self.machine = S.MACHINE_NAMES.get(self.machine_type, "unknown (0x%x)" % self.machine_type)
        self.processors = int(fields["NumberProcessors"])  # type: ignore[arg-type]
        self.dump_type = int(fields["DumpType"])  # type: ignore[arg-type]
        self.dump_type_name = S.DUMP_TYPE_NAMES.get(self.dump_type, "unknown (%d)" % self.dump_type)
        self.directory_table_base = int(fields["DirectoryTableBase"])  # type: ignore[arg-type]
        self.ps_loaded_module_list = int(fields["PsLoadedModuleList"])  # type: ignore[arg-type]
        self.ps_active_process_head = int(fields["PsActiveProcessHead"])  # type: ignore[arg-type]
        self.pfn_database = int(fields["PfnDataBase"])  # type: ignore[arg-type]
        self.kd_debugger_data_block = int(fields["KdDebuggerDataBlock"])  # type: ignore[arg-type]
        self.bugcheck_code = int(fields["BugCheckCode"])  # type: ignore[arg-type]
        self.bugcheck_parameters = tuple(
            int(fields["BugCheckParameter%d" % i]) for i in range(1, 5)  # type: ignore[arg-type]
        )
        self.system_time = int(fields.get("SystemTime", 0))  # type: ignore[arg-type]
        self.system_uptime = int(fields.get("SystemUpTime", 0))  # type: ignore[arg-type]
        self.required_dump_space = int(fields.get("RequiredDumpSpace", 0))  # type: ignore[arg-type]

    @property
    def system_time_utc(self) -> Optional[str]:
        """Crash time as ISO-8601 UTC (FILETIME = 100 ns ticks since 1601), None when unset/absurd."""
        if not self.system_time or self.system_time > 0x7FFFFFFFFFFFFFFF:
            return None
        try:
            when = _FILETIME_EPOCH + datetime.timedelta(microseconds=self.system_time // 10)
        except OverflowError:
            return None
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + "%06dZ" % when.microsecond

    @property
    def crash_time(self) -> Optional[float]:
        """Crash time as Unix seconds (``SystemTime``), None when unset, before 1970 or absurd."""
        if _UNIX_EPOCH_FILETIME < self.system_time < 0x7FFFFFFFFFFFFFFF:
            return (self.system_time - _UNIX_EPOCH_FILETIME) / 1e7
        return None

    @property
    def uptime_seconds(self) -> float:
        return self.system_uptime / 1e7


def read_header(dump: DumpFile) -> DumpHeader:
    """Recognise the file kind from its first 8 bytes and parse the matching header."""
    if dump.size < 8:
        raise DumpFormatError("file too short to be a dump (%d bytes)" % dump.size, 0)
    magic = dump.read(0, 8)
    if magic[:4] == b"MDMP":
        raise DumpFormatError("this is a user-mode minidump (MDMP), not a kernel dump; open it in WinDbg", 0)
    if magic[:4] != b"PAGE":
        raise DumpFormatError("not a Windows kernel dump (signature %r, expected 'PAGE')" % magic[:4], 0)
    if magic[4:8] == b"DU64":
        is64, layout = True, S.DUMP_HEADER64
    elif magic[4:8] == b"DUMP":
        is64, layout = False, S.DUMP_HEADER32
    else:
        raise DumpFormatError(
            "unknown dump header (ValidDump %r, expected 'DU64' or 'DUMP')" % magic[4:8], 4
        )
    fields = layout.parse(dump.view, 0)
    header = DumpHeader(fields, is64)
    if header.dump_type not in S.DUMP_TYPE_NAMES:
        raise DumpFormatError("unknown DumpType %d" % header.dump_type,
                              layout.offsets["DumpType"])
    return header
