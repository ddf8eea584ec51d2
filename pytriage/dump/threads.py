"""Where a thread's kernel stack walk starts: WinDbg's ``.thread``.

Why: the dump's context records only cover what each processor was running at the crash. Every other
thread stopped inside the kernel's context switch: ``SwapContext`` pushed rbp, made room for a
``_KSWITCH_FRAME`` and stored its stack pointer in ``KTHREAD.KernelStack``. That frame holds the
caller's rbp (+0x30) and the return address into ``KiSwapContext`` (+0x38, the frame being 0x40
bytes), which is exactly a register context to unwind from: rip = Return, rsp = KernelStack + 0x40,
rbp = Rbp; the nonvolatile registers come back from ``KiSwapContext``'s own unwind codes.

The address must hold a thread object (dispatcher header Type 6, which Microsoft's engine checks too).
A thread that is some processor's ``KPRCB.CurrentThread`` was running: its ``KernelStack`` is stale
and the processor's ``KPRCB.Context`` is the right start (a triage dump's thread is always this case).

The ``KTHREAD`` offsets come from KDDEBUGGER_DATA64 (``OffsetKThreadKernelStack``,
``OffsetKThreadState``, ``OffsetKThreadInitialStack``): the kernel publishes them there for debuggers,
so no kernel symbols are needed. The ``_KSWITCH_FRAME`` layout (Rbp +0x30, Return +0x38) is the one of
every x64 Windows from 7 to 11.
"""

import struct
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from pytriage.errors import MemoryReadError, PytriageError, format_address

KDBG_OFFSET_KTHREAD_KERNEL_STACK = 0x29C     # USHORTs in KDDEBUGGER_DATA64
KDBG_OFFSET_KTHREAD_INITIAL_STACK = 0x29E
KDBG_OFFSET_KTHREAD_STATE = 0x2A2
SWITCH_FRAME_RBP = 0x30
SWITCH_FRAME_RETURN = 0x38
SWITCH_FRAME_SIZE = 0x40
MAX_KERNEL_STACK = 0x100000                  # a kernel stack (even a large GUI one) is far smaller

# KTHREAD_STATE
THREAD_STATES = {0: "Initialized", 1: "Ready", 2: "Running", 3: "Standby", 4: "Terminated", 5: "Waiting",
                 6: "Transition", 7: "DeferredReady", 8: "GateWaitObsolete", 9: "WaitingForProcessInSwap"}
RUNNING = 2
THREAD_OBJECT = 6                            # KTHREAD.Header.Type (DISPATCHER_HEADER, offset 0)


@dataclass
class ThreadStart:
    """The registers a walk of ``thread`` starts from, and a line that says where they came from."""
    thread: int
    state: str
    registers: Dict[str, int]
    source: str
    initial_stack: Optional[int] = None     # KTHREAD.InitialStack: the top of its kernel stack (None: not saved)


def _kthread_offsets(kdbg: bytes, where: str) -> Dict[str, int]:
    if len(kdbg) < KDBG_OFFSET_KTHREAD_STATE + 2:
        raise PytriageError("KDDEBUGGER_DATA64 %s is too short for the KTHREAD offsets" % where)
    offsets = {name: struct.unpack_from("<H", kdbg, at)[0] for name, at in (
        ("KernelStack", KDBG_OFFSET_KTHREAD_KERNEL_STACK), ("InitialStack", KDBG_OFFSET_KTHREAD_INITIAL_STACK),
        ("State", KDBG_OFFSET_KTHREAD_STATE))}
    if not offsets["KernelStack"] or not offsets["State"]:
        raise PytriageError("KDDEBUGGER_DATA64 %s has no KTHREAD offsets (an older or encoded block)" % where)
    return offsets


def thread_start(read: Callable[[int, int], bytes], kdbg: bytes, where: str, thread: int,
                 processors: List) -> ThreadStart:
    """The start of ``thread``'s walk; ``processors`` are the dump's ``ProcessorContext``s. One-line
    ``PytriageError`` when the address holds no plausible thread or its saved state is not in the dump."""
    offsets = _kthread_offsets(kdbg, where)
    name = format_address(thread)
    for ctx in processors:
        if ctx.current_thread == thread:
            if ctx.registers is None:
                raise PytriageError("thread %s runs on processor %d, whose context is missing: %s"
                                    % (name, ctx.number, ctx.error))
            try:
                initial, = struct.unpack("<Q", read(thread + offsets["InitialStack"], 8)) if offsets[
                    "InitialStack"] else (None,)
            except MemoryReadError:
                initial = None
            return ThreadStart(thread, "Running", dict(ctx.registers),
                               "thread %s (running on processor %d: KPRCB.Context)" % (name, ctx.number), initial)
    try:
        header_type = read(thread, 1)[0]
        raw_state = read(thread + offsets["State"], 1)[0]
        kernel_stack, = struct.unpack("<Q", read(thread + offsets["KernelStack"], 8))
        initial_stack, = struct.unpack("<Q", read(thread + offsets["InitialStack"], 8))
    except MemoryReadError as exc:
        raise PytriageError("thread %s: its KTHREAD is not in the dump (%s)" % (name, exc)) from None
    if header_type != THREAD_OBJECT:
        raise PytriageError("%s does not look like a KTHREAD: its dispatcher header's Type is %d, not %d"
                            % (name, header_type, THREAD_OBJECT))
    state = THREAD_STATES.get(raw_state)
    if state is None:
        raise PytriageError("%s does not look like a KTHREAD: State is %d" % (name, raw_state))
    if raw_state == RUNNING:
        raise PytriageError("thread %s is Running, but no processor context of this dump has it as "
                            "KPRCB.CurrentThread: its KernelStack is stale" % name)
    if kernel_stack >> 47 != 0x1FFFF or kernel_stack & 7:
        raise PytriageError("thread %s: KernelStack %s is not an aligned kernel address" % (name,
                                                                                         format_address(kernel_stack)))
    if not kernel_stack < initial_stack <= kernel_stack + MAX_KERNEL_STACK:
        raise PytriageError("thread %s: KernelStack %s is not below its InitialStack %s" % (
            name, format_address(kernel_stack), format_address(initial_stack)))
    try:
        frame = read(kernel_stack, SWITCH_FRAME_SIZE)
    except MemoryReadError as exc:
        raise PytriageError("thread %s (%s): its saved kernel stack is not in the dump (%s); it may have "
                            "been paged out" % (name, state, exc)) from None
    rbp, ret = struct.unpack_from("<QQ", frame, SWITCH_FRAME_RBP)
    registers = {"rip": ret, "rsp": kernel_stack + SWITCH_FRAME_SIZE, "rbp": rbp}
    return ThreadStart(thread, state, registers, "thread %s (%s: the switch frame at KTHREAD.KernelStack %s)"
                       % (name, state, format_address(kernel_stack)), initial_stack)
