"""dbgeng tier: collects every cross-check so the run ends with the list of facts compared per dump."""

import os

import pytest

from tests.oracle_dbgeng import engine

REPORTS = []
# Facts shown as one line per kind with their details ("lm (6): nt, hal, ..."); others one per line.
GROUPED = ("register", "lm ", ".cxr", "x ", "ln ", "dt ")


@pytest.fixture(scope="session")
def dbgeng_available():
    if not os.access(engine.RUN_SH, os.X_OK):
        pytest.fail("the dbgeng tool is missing at %s (the shared folder must sit beside the repo)" % engine.RUN_SH)
    return engine.RUN_SH


@pytest.fixture
def record_crosscheck():
    def record(cc):
        REPORTS.append(cc)
        return cc
    return record


def pytest_terminal_summary(terminalreporter):
    if not REPORTS:
        return
    tr = terminalreporter
    tr.section("dbgeng cross-check: facts compared (spec / dbgeng / pytriage)")
    total = 0
    for cc in REPORTS:
        total += len(cc.checks)
        tr.write_line(cc.report().splitlines()[0])
        groups = {}
        for check in cc.checks:
            if ": " in check.fact:          # "k: 03 contosolwf!Filter...+0x9": kind, then the detail
                kind, detail = check.fact.split(": ", 1)
            elif check.fact.startswith(GROUPED):
                kind, _, detail = check.fact.rpartition(" ")
            else:
                kind, detail = check.fact, ""
            groups.setdefault(kind, []).append(detail)
        for kind, details in groups.items():
            shown = ", ".join(d for d in details if d)
            tr.write_line("    %s%s" % (kind, " (%d): %s" % (len(details), shown) if shown else ""))
    tr.write_line("total: %d facts over %d dumps" % (total, len(REPORTS)))
