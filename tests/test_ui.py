"""``regtune ui`` as a person uses it: a real browser shows the study's parent run and its trials.

The test starts ``regtune ui`` and a headless Chromium itself, drives the page over the
DevTools protocol (clicks are real mouse events at the element's position), and stops both
process groups whatever happens. Without Chromium it skips, unless
``REGTUNE_REQUIRE_INTEGRATION=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from plugins.integration import unavailable
from study_helpers import FinishedStudy

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")
# Link texts in the page, and the centre of the expand button in the row of the run named arguments[0].
LINK_TEXTS = "[...document.querySelectorAll('a')].map(a => a.innerText.trim()).filter(t => t)"
EXPANDER = """(name => {
  const link = [...document.querySelectorAll('a')].find(a => a.innerText.trim() === name);
  const cell = link && link.closest('[role=gridcell]');
  const button = cell && cell.querySelector('button');
  if (!button) return null;
  const r = button.getBoundingClientRect();
  return {x: r.x + r.width / 2, y: r.y + r.height / 2};
})"""
TEXT_CENTRE = """(text => {
  const el = [...document.querySelectorAll('button, a, label, span')].find(e => e.innerText && e.innerText.trim() === text);
  if (!el) return null;
  const r = el.getBoundingClientRect();
  return {x: r.x + r.width / 2, y: r.y + r.height / 2};
})"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    unavailable("Chromium is not installed (apt-get install -y chromium)")
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the process and everything it started (it leads its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent (uvicorn workers)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _wait(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        # Chromium refuses websocket clients that send an Origin header it did not allow.
        self._ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._id:  # anything else is an event
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def click(self, where: dict[str, float]) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=where["x"], y=where["y"], button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        self._ws.close()


@pytest.fixture(scope="module")
def chromium() -> str:
    """Checked first, so a machine without a browser skips before building a study."""
    path = _chromium()
    try:
        import websocket  # noqa: F401
    except ImportError:
        unavailable("websocket-client is not installed (pip install -e '.[dev]')")
    return path


@pytest.fixture
def mlflow_ui(finished_study: FinishedStudy, tmp_path: Path) -> Iterator[str]:
    """``regtune ui`` on the study's store; yields its base URL once it answers HTTP 200."""
    port = _free_port()
    script = Path(sys.executable).with_name("regtune")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "regtune.cli.app"]
    # MLflow's background job runner spawns a pool of workers a runs table does not need.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, "ui", "--port", str(port), "--tracking-uri", finished_study.tracking_uri],
                                cwd=finished_study.root, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"regtune ui exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    try:
        _wait(f"regtune ui on {url}", up, timeout=180, interval=0.5)
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile, driven through its DevTools websocket."""
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    page = None
    try:
        active = profile / "DevToolsActivePort"  # Chromium writes the port it bound here
        port = _wait("Chromium's DevTools port", lambda: active.is_file() and active.read_text().split()[:1],
                     timeout=60)[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = DevTools(next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"))
        yield page
    finally:
        if page is not None:
            page.close()
        _stop(proc)


def test_runs_table_lists_the_parent_run_and_every_trial(
    chromium: str, finished_study: FinishedStudy, browser: DevTools, mlflow_ui: str, tmp_path: Path
) -> None:
    trials = [f"trial-{t.number}" for t in finished_study.result.study.trials]
    browser.call("Page.navigate", url=f"{mlflow_ui}/#/experiments/{finished_study.result.experiment_id}")
    try:
        _wait("the MLflow app to render", lambda: "Model training" in browser.text(), timeout=60)
        links = browser.evaluate(LINK_TEXTS)
        if finished_study.name not in links:  # a fresh browser opens the GenAI view: switch to training runs
            browser.click(_wait("the 'Model training' switch", lambda: browser.evaluate(
                f"{TEXT_CENTRE}('Model training')"), timeout=30))
        _wait(f"the parent run {finished_study.name!r} in the runs table",
              lambda: finished_study.name in browser.evaluate(LINK_TEXTS), timeout=60)
        if not set(trials) <= set(browser.evaluate(LINK_TEXTS)):  # children are folded under the parent
            browser.click(_wait("the parent run's expand button", lambda: browser.evaluate(
                f"{EXPANDER}({json.dumps(finished_study.name)})"), timeout=30))
        shown = _wait("the trial runs under the parent",
                      lambda: set(trials) <= set(links := browser.evaluate(LINK_TEXTS)) and links, timeout=60)
    except AssertionError as err:
        shot = browser.screenshot(tmp_path / "mlflow-ui-failure.png")
        raise AssertionError(f"{err}; screenshot {shot}; page text:\n{browser.text()[:2000]}") from None
    assert finished_study.name in shown
    assert set(trials) <= set(shown)
    assert not {t for t in shown if t.startswith("trial-")} - set(trials)
    shot = browser.screenshot(tmp_path / "mlflow-runs.png")
    assert shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 10_000


def _status(url: str, host: str, origin: str | None = None) -> int:
    """HTTP status of a request to ``url`` carrying the Host (and Origin) a remote browser sends;
    a POST when there is an Origin, as the UI's own searches are."""
    headers = {"Host": host, **({"Origin": origin, "Content-Type": "application/json"} if origin else {})}
    data = b'{"max_results": 1}' if origin else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if origin else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.slow  # MLflow creates its schema in a fresh store: most of a minute on 2 shared cores
def test_ui_on_every_interface_warns_and_serves_other_machines(tmp_path: Path) -> None:
    """Issue 11: ``--host 0.0.0.0`` printed no warning and answered 403 to every other machine."""
    port = _free_port()
    script = Path(sys.executable).with_name("regtune")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "regtune.cli.app"]
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, "ui", "--host", "0.0.0.0", "--port", str(port), "--tracking-uri",
                                 f"sqlite:///{tmp_path}/mlflow.db", "--allowed-hosts", "mlflow.example.com"],
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    name = f"{socket.gethostname()}:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"regtune ui exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        return _port_open(port) and _status(base + "/health", f"127.0.0.1:{port}") == 200

    try:
        _wait("regtune ui", up, timeout=180, interval=0.5)
        search = base + "/ajax-api/2.0/mlflow/experiments/search"
        assert _status(base + "/", name) == 200  # this machine, by its name
        assert _status(base + "/", f"mlflow.example.com:{port}") == 200  # a name given with --allowed-hosts
        assert _status(search, name, origin=f"http://{name}") == 200  # the UI's own POSTs from that browser
        assert _status(base + "/", f"rebinding.example.net:{port}") == 403  # DNS rebinding stays blocked
        assert _status(search, name, origin="http://evil.example.net") == 403  # and other sites' requests
    finally:
        _stop(proc)
    warnings = [line for line in log.read_text().splitlines() if line.startswith("regtune: warning:")]
    assert len(warnings) == 1 and "--host 0.0.0.0" in warnings[0] and "no login" in warnings[0]
    assert "--allowed-hosts" in warnings[0]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
