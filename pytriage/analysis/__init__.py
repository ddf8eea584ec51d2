"""Analysis: what a crashed machine's memory means, read only through ``Target`` and the symbol layer.

Analysis modules return dataclasses and never print; ``pytriage.commands`` renders them.

Stacks (DESIGN 5), one job per module:

- ``unwind_codes``: decode an x64 UNWIND_INFO (every unwind code, versions 1 and 2, chained info);
- ``image_reader``: read a module image by RVA, from dump memory or from the image file the symbol store
  has (TimeDateStamp/SizeOfImage key), headers parsed with pefile;
- ``function_table``: a module's exception directory (RUNTIME_FUNCTION binary search) with a per-module
  cache (``UnwindCatalog``);
- ``epilog``: recognise an epilog at an instruction pointer by Microsoft's x64 rules and run it forward;
- ``call_site``: is there a ``call`` instruction just before an address (capstone)?
- ``trap_frame``: ``_KTRAP_FRAME`` layout (symbols, else 19041's) and the kernel's trap handlers;
- ``unwinder``: one frame of virtual unwinding (RtlVirtualUnwind's rules);
- ``stack_walk``: the bounded walk from a register context, with the stack-scan fallback.
"""
