"""pytriage: network-aware Windows kernel crash triage for WinDbg/CDB and offline dumps.

The package is split by job (see DESIGN.md section 2): ``target`` is the one interface analysis code
reads memory through, ``dump`` is the offline kernel-dump reader behind it, ``scenarios`` builds
synthetic dumps for tests and the demo, ``commands`` render results, ``cli`` is the shell entry point.
"""

__version__ = "0.1.0"
