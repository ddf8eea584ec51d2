"""Offline kernel-dump reader: file -> dump format (full, bitmap, triage) -> x64 paging (DESIGN 3)."""

from pytriage.dump.kernel_dump import KernelDump, open_dump

__all__ = ["KernelDump", "open_dump"]
