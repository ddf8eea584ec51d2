"""report.html in a real browser: Debian's headless chromium, driven over the DevTools protocol.

What only a browser can show: that the page's own script runs (the Content-Security-Policy hashes match,
sorting works when a header is clicked, a bucket link opens its drill-down), and that hostile dump
strings stay text: no injected script or event handler runs, and the strings are visible on the page
as typed. The hostile page is loaded twice, as shipped and with the policy bypassed (so the escaping
alone is what is tested), and a control page that does NOT escape the same strings shows that the
detector sees an injection when there is one.

The browser is driven with chromium's ``--remote-debugging-pipe`` (JSON messages separated by NUL on file
descriptors 3 and 4): no extra Python package and no port. Clicks are real mouse events
(Input.dispatchMouseEvent at the element's position), not ``element.click()``.
"""

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from typing import Any, Dict, List, Optional

import pytest

from pytriage.batch.groups import NETWORK, BatchReport, CulpritCount, Group, RunFacts, build_report
from pytriage.batch.report import write_reports
from pytriage.batch.report_html import render_html
from tests.batch.test_reports import (  # the store with known contents, shared with the non-browser tests
    FB_7E,
    FW,
    HOSTILE_BUCKET,
    HOSTILE_CULPRIT,
    HOSTILE_PATH,
    HOSTILE_REASON,
    NBL,
    ROOT,
    VNET,
    fill_store,
    record_template,  # noqa: F401 (fixture)
)

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--no-default-browser-check", "--remote-debugging-pipe"]
TIMEOUT = 30.0
# installed before any page script: records every CSP violation (our own script or style refused, or
# anything injected that tried to run)
WATCH = ("window.__violations = [];"
         "document.addEventListener('securitypolicyviolation', function (e) {"
         " window.__violations.push(e.violatedDirective + ' ' + e.blockedURI); });")


def _above_nine(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


_POINT = """new Promise(function (done) {
  var element = document.querySelector(%s);
  element.scrollIntoView({block: "center"});
  requestAnimationFrame(function () { requestAnimationFrame(function () {
    var box = element.getClientRects()[0], x = box.x + box.width / 2, y = box.y + box.height / 2;
    var hit = document.elementFromPoint(x, y);
    done(hit && element.contains(hit) ? [x, y] : null);
  }); });
})"""


class Browser:
    """One headless chromium, one page, over --remote-debugging-pipe."""

    def __init__(self, profile: str, log_path: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # chromium reads commands on fd 3 and writes replies on fd 4; bash puts the pipes there (dash, Debian's
        # sh, takes single-digit descriptors only). The child's ends are first moved above 9 so that
        # neither of them is 3 or 4 itself when the redirections run.
        to_chrome_r, from_chrome_w = [_above_nine(fd) for fd in (to_chrome_r, from_chrome_w)]
        script = 'exec "$0" "$@" 3<&%d 4>&%d %d<&- %d>&-' % (to_chrome_r, from_chrome_w, to_chrome_r, from_chrome_w)
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(["bash", "-c", script, CHROMIUM] + FLAGS + ["--user-data-dir=" + profile],
                                     pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: List[Dict[str, Any]] = []
        self.dialogs: List[str] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.page("Page.enable")
        self.page("Runtime.enable")
        self.page("Page.addScriptToEvaluateOnNewDocument", source=WATCH)
        self.page("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

    # -- protocol ---------------------------------------------------------------------------------------------------
    def _send(self, method: str, params: Dict[str, Any], session: Optional[str]) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _read(self, deadline: float) -> Dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise AssertionError("chromium did not answer within %.0f s" % TIMEOUT)
            chunk = os.read(self._from_chrome, 65536)
            if not chunk:
                raise AssertionError("chromium closed the DevTools pipe (exit %s)" % self.proc.poll())
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if message.get("method") == "Page.javascriptDialogOpening":
            # an alert() blocks the page: note it and dismiss it so the test can report it
            self.dialogs.append("%s: %s" % (message["params"]["type"], message["params"]["message"]))
            self._send("Page.handleJavaScriptDialog", {"accept": True}, message.get("sessionId"))
        return message

    def call(self, method: str, session: Optional[str] = None, **params: Any) -> Dict[str, Any]:
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._read(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise AssertionError("%s: %s" % (method, message["error"]))
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def page(self, method: str, **params: Any) -> Dict[str, Any]:
        return self.call(method, self.session, **params)

    def wait_event(self, method: str) -> Dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            for index, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(index)
            message = self._read(deadline)
            if "method" in message:
                self.events.append(message)

    # -- page -------------------------------------------------------------------------------------------------------
    def load(self, path: str, bypass_csp: bool = False) -> None:
        self.page("Page.setBypassCSP", enabled=bypass_csp)
        self.dialogs = []
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        self.page("Page.navigate", url="file://" + path)
        self.wait_event("Page.loadEventFired")

    def js(self, expression: str) -> Any:
        """The value of ``expression`` in the page (a promise is awaited)."""
        reply = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in reply:
            raise AssertionError("page script failed: %s" % reply["exceptionDetails"])
        return reply["result"].get("value")

    def click(self, selector: str) -> None:
        """A real left click on the first element matching ``selector``, in the middle of its first line box (a
        link wrapped over several lines has blank space in the middle of its bounding box). The position is
        taken two frames after scrolling it into view, once any scroll the previous click started is done,
        and the element must be the one under the mouse there."""
        point = self.js(_POINT % json.dumps(selector))
        assert point, "%s is not under the mouse at its own position" % selector
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", type=kind, x=point[0], y=point[1], button="left", clickCount=1)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except AssertionError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        self._log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert os.access(CHROMIUM, os.X_OK), "Debian's chromium is a test dependency: scripts/test installs it"
    folder = tmp_path_factory.mktemp("chromium")
    session = Browser(str(folder / "profile"), str(folder / "chromium.log"))
    yield session
    session.close()
    shutil.rmtree(str(folder / "profile"), ignore_errors=True)


@pytest.fixture(scope="module")
def report_path(tmp_path_factory, record_template):  # noqa: F811 (fixture imported above)
    folder = tmp_path_factory.mktemp("report")
    data = fill_store(str(folder / "results.sqlite"), record_template)
    paths = write_reports(data["store"], data["run"], str(folder / "out"))
    data["store"].close()
    return paths["html"]


ROW_TEXTS = "Array.from(document.querySelectorAll('#%s tbody tr')).map(r => Array.from(r.cells).map(c => c.innerText))"


def group_rows(browser: Browser) -> List[List[str]]:
    return [[row[1], row[2]] for row in browser.js(ROW_TEXTS % "network-groups")]


def assert_nothing_injected_ran(browser: Browser) -> None:
    assert browser.dialogs == []
    assert browser.js("document.title") == "pytriage batch report: " + ROOT
    assert browser.js("typeof window.PWNED") == "undefined"
    assert browser.js("document.scripts.length") == 1
    assert browser.js("document.images.length") == 0


def test_report_page_runs_its_script_and_shows_the_groups(browser, report_path):
    browser.load(report_path)
    assert browser.js("window.__violations") == []       # our script and style match their CSP hashes
    assert_nothing_injected_ran(browser)
    assert group_rows(browser) == [[NBL, "4"], [FW, "2"], [VNET, "2"], [FB_7E, "1"], [HOSTILE_BUCKET, "1"]]
    headers = "Array.from(document.querySelectorAll('#network-groups thead th')).map(th => th.textContent)"
    assert browser.js(headers) == [
        "#", "Network bucket", "Dumps", "First seen (UTC)", "Last seen (UTC)", "Bugcheck", "Top culprits",
        "Confidence", "Example dump"]


def test_clicking_headers_sorts_numbers_dates_and_text(browser, report_path):
    browser.load(report_path)
    dumps = "#network-groups thead th:nth-child(3)"
    assert browser.js("document.querySelector(%s).getAttribute('aria-sort')" % json.dumps(dumps)) == "descending"
    browser.click(dumps)                                 # ascending; ties keep their rank order
    assert group_rows(browser) == [[FB_7E, "1"], [HOSTILE_BUCKET, "1"], [FW, "2"], [VNET, "2"], [NBL, "4"]]
    assert browser.js("document.querySelector(%s).getAttribute('aria-sort')" % json.dumps(dumps)) == "ascending"
    browser.click(dumps)
    assert group_rows(browser) == [[NBL, "4"], [FW, "2"], [VNET, "2"], [FB_7E, "1"], [HOSTILE_BUCKET, "1"]]
    browser.click("#network-groups thead th:nth-child(4)")   # first seen: unknown first, then by time
    assert [row[0] for row in group_rows(browser)] == [FB_7E, HOSTILE_BUCKET, FW, VNET, NBL]
    browser.click("#network-groups thead th:nth-child(2)")   # bucket name, case-insensitive
    assert [row[0] for row in group_rows(browser)] == [FB_7E, HOSTILE_BUCKET, NBL, FW, VNET]
    browser.click("#network-groups thead th:nth-child(2)")
    assert [row[0] for row in group_rows(browser)] == [VNET, FW, NBL, HOSTILE_BUCKET, FB_7E]


def test_numeric_columns_sort_by_value_not_text(browser, tmp_path):
    """2 < 9 < 10 as numbers ("10" < "2" as text), from a report built directly from data."""
    run = RunFacts(id=1, root="/r", tool_version="0", engine="offline", started=0.0, finished=1.0, interrupted=False,
                   dumps_found=21, dumps_triaged=21, ok=21)
    groups = [Group(NETWORK, rank, bucket, dumps, None, None, "x.dmp", [], [CulpritCount("d.sys", dumps, [])],
                    [("high", dumps)]) for rank, (bucket, dumps) in enumerate([("B10", 10), ("A9", 9), ("C2", 2)], 1)]
    page = tmp_path / "numbers.html"
    page.write_text(render_html(BatchReport(run, groups, [], [], [], [])), encoding="utf-8")
    browser.load(str(page))
    browser.click("#network-groups thead th:nth-child(3)")
    assert [row[1:3] for row in browser.js(ROW_TEXTS % "network-groups")] == [["C2", "2"], ["A9", "9"],
                                                                             ["B10", "10"]]


def test_hostile_strings_are_text_and_visible(browser, report_path):
    browser.load(report_path)
    # the bucket link opens the group's drill-down; its dump's reasoning opens on a click too
    browser.click("#network-groups tbody tr:nth-child(5) a")
    assert browser.js("document.getElementById('network-5').open") is True
    browser.click("#network-5 tr.why summary")
    reasoning = browser.js("Array.from(document.querySelectorAll('#network-5 tr.why li')).map(li => li.innerText)")
    assert reasoning == ["Bugcheck 0x3B SYSTEM_SERVICE_EXCEPTION.", HOSTILE_REASON]
    assert browser.js("document.querySelector('#network-5 tr.why li:last-child').getBoundingClientRect().height") > 0
    dump_cells = browser.js("Array.from(document.querySelector('#network-5 table.dumps tbody tr').cells)"
                            ".map(c => c.textContent)")
    assert dump_cells[0] == HOSTILE_PATH
    assert dump_cells[3] == HOSTILE_CULPRIT + " 0x11111111"
    assert browser.js("document.querySelector('#network-5 summary').innerText") == "#5 %s — 1 dump" % HOSTILE_BUCKET
    culprits = browser.js(ROW_TEXTS % "culprits")
    assert culprits[2][1] == HOSTILE_CULPRIT
    assert browser.js("window.__violations") == []
    assert_nothing_injected_ran(browser)


def test_analyze_bucket_drill_down_links_to_the_dumps_network_group(browser, report_path):
    browser.load(report_path)
    browser.click("#failure-groups tbody tr:nth-child(2) a")          # 0x1E_80000003_nwifi!Dot11SendCompletion
    assert browser.js("[document.getElementById('failure-2').open, document.getElementById('network-1').open]") == [
        True, False]
    links = "Array.from(document.querySelectorAll('#failure-2 table.dumps a')).map(a => [a.textContent, a.hash])"
    assert browser.js(links) == [["a/dump-01.dmp", "#dump-1"], ["a/dump-02.dmp", "#dump-2"],
                                 ["a/dump-04.dmp", "#dump-4"], ["nested/deep/dup-of-01.dmp", "#dump-5"]]
    browser.click("#failure-2 table.dumps tbody tr:nth-child(3) a")
    assert browser.js("[location.hash, document.getElementById('network-1').open]") == ["#dump-4", True]
    assert browser.js("document.getElementById('dump-4').cells[0].textContent") == "a/dump-04.dmp"


def test_escaping_alone_keeps_injections_inert(browser, report_path):
    """With the page's Content-Security-Policy bypassed, nothing injected runs either."""
    browser.load(report_path, bypass_csp=True)
    assert_nothing_injected_ran(browser)
    assert group_rows(browser)[4] == [HOSTILE_BUCKET, "1"]


def test_the_detector_sees_an_unescaped_injection(browser, tmp_path):
    """Control: the same strings NOT escaped do run (alert, title, global) in this browser, so the checks above
    would fail if report.html let them through."""
    page = tmp_path / "unescaped.html"
    page.write_text("<!DOCTYPE html><html><head><title>control</title></head><body><p>%s</p></body></html>"
                    % HOSTILE_CULPRIT, encoding="utf-8")
    browser.load(str(page))
    assert browser.dialogs == ["alert: 1"]
    browser.dialogs.clear()
    assert browser.js("document.title") == "PWNED"
    assert browser.js("window.PWNED") == 1
    assert browser.js("document.scripts.length") == 1 and browser.js("document.images.length") == 1


def test_report_built_from_the_store_matches_what_the_browser_shows(report_path, tmp_path, record_template):  # noqa: F811
    """The file the browser tests load is write_reports' output for the same store: same bytes as render_html."""
    data = fill_store(str(tmp_path / "again.sqlite"), record_template)
    with open(report_path, encoding="utf-8") as fh:
        assert fh.read() == render_html(build_report(data["store"], data["run"]))
    data["store"].close()
