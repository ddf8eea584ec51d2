"""Two bucket ids per crash (DESIGN 6): one that groups like ``!analyze`` does, one that follows the real owner.

``!analyze``'s FAILURE_BUCKET_ID groups by where the crash *surfaced*: ``AV_NETIO!NetioDereferenceNetBufferList``
collects every driver's bad NBL under NETIO. Ours groups by who is to blame and how
(``WFP_NBL_REFERENCE_MISUSE_inspect.sys``), so a folder of dumps sorts into root causes. The first follows the
format of the modern debugger's buckets as the corpus transcripts show them: ``AV_<module>!<function>`` for
access violations, ``0x<code>_<subcode>_<module>!<function>`` for bugchecks whose first parameter is a subcode
(``0x19_22_Driver!unknown_function``), ``0x<code>_<module>!<function>`` otherwise, ``unknown_function`` when the
module has no symbols.
"""

import re
from typing import Optional

STATUS_ACCESS_VIOLATION = 0xC0000005
AV_CODES = frozenset((0x0A, 0xD1, 0x50, 0xD5, 0xD6, 0x100000D1, 0x1000000A, 0x10000050))
IRQL_BUCKETS = {0xC5: 1}              # bucketed by the IRQL parameter, like BUGCHECK_STR 0xC5_2
_UNSAFE = re.compile(r"[^A-Za-z0-9_.!$@?-]")


def followup_name(module: Optional[str], function: Optional[str]) -> str:
    """``module!function`` as a bucket names it (no offset); ``module!unknown_function`` without symbols."""
    if module is None:
        return "unknown_module!unknown_function"
    return "%s!%s" % (module, function or "unknown_function")


def analyze_bucket(code: int, params, family: str, subcode_param: Optional[int], exception_param: Optional[int],
                   followup: str) -> str:
    """The ``!analyze``-style FAILURE_BUCKET_ID for a crash whose follow-up frame is ``followup``."""
    code_text = "0x%X" % code
    if exception_param is not None:
        status = params[exception_param] & 0xFFFFFFFF
        if status == STATUS_ACCESS_VIOLATION:
            return "AV_%s" % followup
        return "%s_%x_%s" % (code_text, status, followup)
    if code in AV_CODES or family == "access-violation":
        return "AV_%s" % followup
    if code in IRQL_BUCKETS:
        return "%s_%x_%s" % (code_text, params[IRQL_BUCKETS[code]], followup)
    if subcode_param is not None:
        return "%s_%x_%s" % (code_text, params[subcode_param], followup)
    return "%s_%s" % (code_text, followup)


def network_bucket(problem: str, binary: Optional[str]) -> str:
    """``PROBLEM_binary``: e.g. ``NBL_COMPLETION_STACK_CORRUPT_vwifimf.sys``; characters a file name or a
    grouping key should not carry are replaced (the binary name comes from the dump)."""
    return _UNSAFE.sub("_", "%s_%s" % (problem, binary or "unknown"))
