"""Helpers for the browser tests.

* Debian's ``chromium``, driven by Playwright for Python (``playwright install`` is not needed: the
  system browser is launched through ``executable_path``).  Missing chromium is installed with
  ``apt-get install -y chromium`` when the tests run as root; otherwise the tests skip with a message,
  or fail when ``CI`` is set (a CI run must never skip them).
* :class:`LabServer`: one JupyterLab started exactly as ``make lab`` starts it (the same ``make lab``
  command line: 127.0.0.1, ``--ServerApp.root_dir=notebooks``, ``--allow-root`` as root, a token, a
  free port, no browser) with ``METALEARN_LITE_QUICK=1`` in its environment (full mode instead with
  ``METALEARN_LITE_BROWSER_MODE=full``).  Three private folders
  keep the lab from touching the repository or the user's own Jupyter state: its settings
  (autosave off, so the committed notebooks are never written; every cell kept in the page; no news
  pop-up), its workspaces (no restored tabs) and its data folder (where the notebooks are signed as
  trusted, as they are for their author, so the committed widgets render from the saved state).
* :class:`LessonPage`: one notebook opened in that lab: its committed outputs, Run All, the error
  check, and every widget control moved while its output is watched and photographed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
#: the Makefile's $(STAMP); `make -o` treats it as up to date, so that starting the lab never reinstalls
VENV_STAMP = ".venv/.installed"
#: the environment pytest started with, before any fixture ran (tests/conftest.py points
#: METALEARN_LITE_CACHE at a private folder): the lab gets what `make lab` gets, plus quick mode
START_ENV = dict(os.environ)

#: ``METALEARN_LITE_BROWSER_MODE=full`` runs the lessons in full mode (quick mode unset in the lab), to measure
#: the widgets' response times a reader gets; the default, and what `make test` runs, is quick mode
MODE = "full" if os.environ.get("METALEARN_LITE_BROWSER_MODE", "").strip().lower() == "full" else "quick"

WIDGET_LIMIT_S = 60.0  # a widget's output must have changed and settled within this (the goal, 3 s, is reported)
WIDGET_PATIENCE_S = 300.0  # a slower response is still waited for (and measured) up to this, then abandoned
RUN_ALL_LIMIT_S = 600.0 if MODE == "quick" else 1200.0  # one notebook, Run All Cells
LOAD_LIMIT_S = 120.0  # server start, page load, kernel start
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: lab settings, one file per plugin, in a private JUPYTERLAB_SETTINGS_DIR
LAB_SETTINGS = {
    # never save: Run All changes the open notebooks, and autosave would write them back into notebooks/
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    # every cell in the page (the default windowing leaves cells far below the view unrendered)
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # no "get notified about Jupyter news?" pop-up over the screenshots (and no network requests)
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}

# An error output in JupyterLab is rendered as stderr text; these lines only appear in tracebacks.
TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|^\s*Cell In\[\d+\], line \d+|^[\w.]*(Error|Exception|Interrupt)\b", re.M
)


# ----------------------------------------------------------------------------------------- skip or fail


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason`` in a local run; fail under CI (``CI`` set), where these tests must run."""
    if in_ci():
        pytest.fail(
            f"{reason}\n(CI is set: the browser tests must run there, so this fails instead of skipping)", pytrace=False
        )
    pytest.skip(reason)


# ----------------------------------------------------------------------------------------------- chromium


def find_chromium() -> str | None:
    """``$METALEARN_LITE_CHROMIUM``, else Debian's ``chromium`` (or ``chromium-browser``) on PATH."""
    explicit = os.environ.get("METALEARN_LITE_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> str:
    """The chromium executable; installed with apt-get when missing and running as root."""
    path = find_chromium()
    if path:
        return path
    if os.environ.get("METALEARN_LITE_CHROMIUM"):
        skip_or_fail(f"METALEARN_LITE_CHROMIUM={os.environ['METALEARN_LITE_CHROMIUM']} is not an executable file")
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        log = ""
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
            log += f"$ {' '.join(cmd)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            if done.returncode != 0:
                break
        path = find_chromium()
        if path:
            return path
        skip_or_fail(f"chromium is missing and installing it failed:\n{log}")
    skip_or_fail(
        "the browser tests need Debian's chromium, which is missing: install it with "
        "`sudo apt-get install -y chromium` (run as root, the tests install it themselves), "
        "or set METALEARN_LITE_CHROMIUM to a Chromium or Chrome executable"
    )
    raise AssertionError("unreachable")


CHROMIUM_ARGS = ["--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--lang=en-US"]


# ------------------------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """JupyterLab started with ``make lab`` (see the module docstring); :meth:`stop` always ends it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.settings = home / "lab-settings"
        self.workspaces = home / "lab-workspaces"
        self.data = home / "jupyter-data"
        self.log_path = home / "jupyterlab.log"
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.command: list[str] = []

    # -- life cycle

    def start(self) -> None:
        if not (REPO / ".venv" / "bin" / "jupyter").exists():
            skip_or_fail("no .venv with JupyterLab: run the browser tests through `make test` (it creates .venv)")
        if not shutil.which("make"):
            skip_or_fail("`make` is missing: the browser tests start the lab with `make lab`")
        for relative, values in LAB_SETTINGS.items():
            path = self.settings / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.workspaces.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        env = {
            **{k: v for k, v in START_ENV.items() if k != "METALEARN_LITE_QUICK"},
            **({"METALEARN_LITE_QUICK": "1"} if MODE == "quick" else {}),
            "JUPYTERLAB_SETTINGS_DIR": str(self.settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.workspaces),
            "JUPYTER_DATA_DIR": str(self.data),
            "JUPYTER_RUNTIME_DIR": str(self.data / "runtime"),
        }
        flags = (
            f"--no-browser --ServerApp.port={self.port} --ServerApp.port_retries=0 "
            f"--IdentityProvider.token={self.token}"
        )
        self.command = ["make", "-s", "-o", VENV_STAMP, "lab", f"LAB_FLAGS={flags}"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + LOAD_LIMIT_S
        while True:
            try:
                self.api("GET", "status", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"`make lab` exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {LOAD_LIMIT_S:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Shut the server down (its kernels with it); terminate, then kill its process group if needed."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                try:
                    self.api("POST", "shutdown", timeout=5)
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                    pass
                for sig, wait in ((None, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                    if sig is not None:
                        try:
                            os.killpg(proc.pid, sig)
                        except ProcessLookupError:
                            break
                    try:
                        proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
        finally:
            self._kill_leftover_kernels()
            self.proc = None

    def _kill_leftover_kernels(self) -> None:
        """Kernels run in their own sessions: kill any still running from this server's runtime folder."""
        marker = str(self.data / "runtime").encode()
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- REST API

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path}{sep}token={self.token}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        request = urllib.request.Request(
            f"{self.base}/api/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            raw = reply.read()
        return json.loads(raw) if raw else None

    def kernel_done(self, kernel_id: str, timeout: float) -> bool:
        """Whether the kernel has run everything sent to it before now (a widget's callback included), waiting
        up to ``timeout`` s.  It sends a silent, empty execute request on its own websocket: the kernel handles
        its shell messages one at a time, in order, so the reply comes only after them.  (The server's
        ``execution_state`` is not enough: it stayed "idle" while a widget's callback trained a network.)"""
        import websocket  # websocket-client, a dependency of jupyter_server

        url = f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels?token={self.token}"
        msg_id = secrets.token_hex(8)
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "browser-test",
                  "session": secrets.token_hex(8), "version": "5.3", "date": ""}
        content = {"code": "", "silent": True, "store_history": False, "user_expressions": {}, "allow_stdin": False}
        deadline = time.monotonic() + timeout
        ws = websocket.create_connection(url, timeout=max(timeout, 1.0))
        try:
            ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                                "channel": "shell", "buffers": []}))
            while (left := deadline - time.monotonic()) > 0:
                ws.settimeout(left)
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    return False
                if not isinstance(raw, str):
                    continue
                msg = json.loads(raw)
                if msg.get("msg_type", msg.get("header", {}).get("msg_type")) == "execute_reply" and (
                    msg.get("parent_header", {}).get("msg_id") == msg_id
                ):
                    return True
            return False
        finally:
            ws.close()

    def kernel_of(self, notebook: str) -> str | None:
        for session in self.api("GET", "sessions"):
            if session.get("path") == notebook and session.get("kernel"):
                return session["kernel"]["id"]
        return None

    def kernel_state(self, kernel_id: str) -> str:
        return self.api("GET", f"kernels/{kernel_id}")["execution_state"]

    def close_sessions(self, notebook: str) -> None:
        """Shut down the kernels of ``notebook`` (the page is closed without saving)."""
        for session in self.api("GET", "sessions"):
            if session.get("path") == notebook:
                self.api("DELETE", f"sessions/{session['id']}", timeout=30)

    def trust(self, notebook: Path) -> None:
        """Sign ``notebook`` in this server's private notary, as Jupyter signs a notebook its author ran
        and saved: its committed widget outputs then render from the saved widget state."""
        import nbformat
        from nbformat.sign import NotebookNotary

        with warnings.catch_warnings():  # a cell without an id: reported by LessonPage.open
            warnings.simplefilter("ignore")
            nb = nbformat.read(notebook, as_version=4)
        NotebookNotary(data_dir=str(self.data)).sign(nb)


# ------------------------------------------------------------------------------------------ results


@dataclass
class WidgetResult:
    notebook: str
    cell: int  # 1-based, as JupyterLab's status bar counts ("Cell 12/29")
    code: str  # the cell's first line of code
    kind: str
    label: str
    change: str  # what the test did, e.g. "ways: 5 -> 6"
    first_change_s: float | None  # action -> the output first differs
    response_s: float | None  # action -> the output differs, the kernel is idle and the output is stable
    changed: str  # what differs in the output: "text", "figure", and whether its screenshots differ
    before: str | None  # screenshot files, relative to the screenshot folder
    after: str | None
    ok: bool


@dataclass
class NotebookResult:
    notebook: str
    load_s: float | None = None
    run_all_s: float | None = None
    widgets: list[WidgetResult] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    total_s: float | None = None


def write_summary(folder: Path, results: list[NotebookResult]) -> None:
    """``summary.json`` and ``summary.md`` in ``folder``: per notebook, per widget, the response times."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(
        json.dumps({"mode": MODE, "widget_limit_s": WIDGET_LIMIT_S, "notebooks": [asdict(r) for r in results]},
                   indent=1)
        + "\n"
    )
    lines = [
        f"# Lessons in JupyterLab: widget response times ({MODE} mode)",
        "",
        f"Response: from the action to the moment the widget's output has changed, the kernel is idle and the "
        f"output is stable (limit {WIDGET_LIMIT_S:.0f} s). First change: when the output first differed.",
        "",
        "| notebook | load (s) | Run All (s) | widgets | problems |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.notebook} | {_fmt(r.load_s)} | {_fmt(r.run_all_s)} | {len(r.widgets)} | "
            f"{len(r.problems) + len(r.page_errors)} |"
        )
    lines += [
        "",
        "| notebook | cell | widget | change | first change (s) | response (s) | output changed | screenshots |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for w in r.widgets:
            shots = " / ".join(f"[{name}]({name})" for name in (w.before, w.after) if name)
            lines.append(
                f"| {w.notebook} | {w.cell} | {w.kind} {w.label!r} | {w.change} | {_fmt(w.first_change_s)} | "
                f"{_fmt(w.response_s)} | {w.changed or 'NOTHING'} | {shots} |"
            )
    problems = [(r.notebook, p) for r in results for p in [*r.problems, *(f"page error: {e}" for e in r.page_errors)]]
    if problems:
        lines += ["", "## Problems", ""] + [f"* {nb}: {p}" for nb, p in problems]
    (folder / "summary.md").write_text("\n".join(lines) + "\n")


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


# ------------------------------------------------------------------------------------- the lesson page

# Marks every widget control in the notebook's outputs (data-mll-control) and the Output widget that
# shows its effect (data-mll-output), and describes them.  An interact's output is its own Output
# widget; a control outside interact is watched through the Output widgets of its cell.
_FIND_CONTROLS = r"""
() => {
  const KINDS = [
    ['slider', 'widget-slider'], ['dropdown', 'widget-dropdown'], ['select', 'widget-select'],
    ['checkbox', 'widget-checkbox'], ['toggle-buttons', 'widget-toggle-buttons'],
    ['toggle-button', 'widget-toggle-button'], ['radio', 'widget-radio'], ['button', 'widget-button'],
    ['text', 'widget-text'],
  ];
  // display-only views: containers, text, images, progress bars (tqdm's in full mode: widget-hprogress)
  const PASSIVE = ['widget-box', 'widget-container', 'widget-output', 'widget-label', 'widget-html',
                   'widget-htmlmath', 'widget-image', 'widget-progress', 'widget-hprogress', 'widget-vprogress',
                   'widget-valid', 'widget-readout'];
  const found = [], unknown = [];
  let outputs = 0;
  const cells = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')];
  cells.forEach((cell, ci) => {
    // every widget view is a Lumino widget (some, like SelectionSlider, lack the jupyter-widgets class)
    for (const el of cell.querySelectorAll('.jp-OutputArea .lm-Widget')) {
      if (el.parentElement.closest('[data-mll-control]')) continue;
      const cls = [...el.classList];
      const kind = KINDS.find(([, c]) => cls.includes(c));
      if (!kind) {
        if (!cls.some(c => PASSIVE.includes(c)) && cls.some(c => c.startsWith('widget-')))
          unknown.push({cell: ci + 1, classes: el.className});
        continue;
      }
      const interact = el.closest('.widget-interact');
      const watched = interact ? [...interact.children].filter(c => c.classList.contains('widget-output'))
                               : [...cell.querySelectorAll('.widget-output')];
      let out = null;
      if (watched.length) {
        const box = watched.length === 1 ? watched[0] : cell.querySelector('.jp-OutputArea');
        if (!box.dataset.mllOutput) box.dataset.mllOutput = 'o' + (++outputs);
        out = box.dataset.mllOutput;
      }
      const id = found.length;
      el.dataset.mllControl = String(id);
      const labels = [...el.querySelectorAll('.widget-label, .widget-label-basic')]
        .map(l => l.textContent.replace(/\u200b/g, '').trim()).filter(Boolean);
      found.push({
        id, cell: ci + 1, kind: kind[0],
        label: labels[0] || (kind[0] === 'button' ? el.textContent.trim() : ''),
        output: out,
        interact: interact ? (interact.dataset.mllInteract ||= String(found.length)) : null,
        manual: !!interact && [...interact.children].some(c => c.classList.contains('widget-button')),
      });
    }
  });
  return {controls: found, unknown};
}
"""

# A fingerprint of an output element: its text and every image it shows.
_SIGNATURE = r"""
(el) => {
  const hash = (parts) => {
    let h = 2166136261 >>> 0;
    for (const s of parts)
      for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619) >>> 0; }
    return h;
  };
  const text = el.innerText;
  const images = [...el.querySelectorAll('img')].map(img => img.src);
  for (const c of el.querySelectorAll('canvas')) { try { images.push(c.toDataURL()); } catch (e) {} }
  const t = hash([text]), i = hash(images);
  return {hash: t + ':' + i, text_hash: t, image_hash: i, text: text.slice(0, 500), images: images.length};
}
"""

_STDERR_OUTPUTS = r"""
() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')].flatMap((cell, i) =>
  [...cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(o => ({cell: i + 1, text: o.innerText})))
"""

# Outputs showing a widget (or the error that replaces it), outside other widgets.
_WIDGET_OUTPUTS = r"""
() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')].filter(o =>
  !o.parentElement.closest('.jupyter-widgets') &&
  (o.querySelector(':scope > .jupyter-widgets') || o.innerText.includes('Error displaying widget'))).length
"""

# Plain-text outputs that are the repr of a matplotlib object ("<Figure size 640x480 with 1 Axes>",
# "(<Figure ...>, None)"): a value echoed by mistake next to (or instead of) its picture.
_STRAY_REPRS = r"""
() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')].flatMap((cell, i) =>
  [...cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="text/plain"]')]
    .filter(o => /<(Figure size|matplotlib\.)/.test(o.innerText))
    .map(o => ({cell: i + 1, text: o.innerText.trim().slice(0, 200), in_widget: !!o.closest('.widget-output')})))
"""

_CODE_PROMPTS = r"""
() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')].map(c => {
  const p = c.querySelector('.jp-InputPrompt');
  return p ? p.textContent.trim() : '';
})
"""


class LessonPage:
    """One lesson open in the lab; every step records into :attr:`result` (problems are collected, the
    test asserts at the end, so that one run reports everything that is wrong with a lesson)."""

    def __init__(self, page, lab: LabServer, notebook: Path, shots: Path, readme: Path | None = None) -> None:
        self.page = page
        self.lab = lab
        self.path = notebook
        self.name = notebook.name
        self.shots = shots  # this notebook's screenshot folder
        self.readme = readme  # where to write the README screenshots, or None
        self.nb = json.loads(notebook.read_text())
        self.result = NotebookResult(notebook=notebook.stem)
        self.kernel: str | None = None
        self._reported: set[tuple[int, str]] = set()  # tracebacks already reported
        page.on("pageerror", lambda err: self.result.page_errors.append(str(err)))
        page.on("console", self._console)
        page.on("dialog", lambda dialog: dialog.dismiss())

    def _console(self, message) -> None:
        if message.type == "error":
            self.result.console_errors.append(message.text[:500])

    def problem(self, text: str) -> None:
        self.result.problems.append(text)

    # -- helpers

    def code_line(self, cell: int) -> str:
        source = self.nb["cells"][cell - 1]["source"]
        text = "".join(source) if isinstance(source, list) else source
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        return lines[0].strip()[:100] if lines else ""

    def kernel_idle(self) -> bool:
        return self.kernel is not None and self.lab.kernel_state(self.kernel) == "idle"

    def wait_until(self, what: str, check, limit: float, poll: float = 0.5) -> float:
        """Seconds until ``check()`` is true; raises AssertionError naming ``what`` after ``limit``."""
        start = time.perf_counter()
        while not check():
            if time.perf_counter() - start > limit:
                raise AssertionError(f"{self.name}: {what} (waited {limit:.0f} s)")
            time.sleep(poll)
        return time.perf_counter() - start

    def notebook_text(self) -> str:
        return self.page.inner_text(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")

    def menu(self, menu: str, command: str) -> None:
        """Choose ``command`` from the menu bar's ``menu`` (as a reader does: Run > Run All Cells)."""
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^\s*{menu}\s*$")).click()
        item = self.page.locator(f'.lm-Menu .lm-Menu-item[data-command="{command}"]').first
        item.wait_for(state="visible", timeout=10_000)
        assert "lm-mod-disabled" not in (item.get_attribute("class") or ""), f"{menu} > {command} is disabled"
        item.click()

    def check_widget_errors(self, when: str) -> None:
        if "Error displaying widget" in self.notebook_text():
            self.problem(f"{when}: the page shows 'Error displaying widget'")

    def check_tracebacks(self, when: str) -> None:
        for out in self.page.evaluate(_STDERR_OUTPUTS):
            if TRACEBACK.search(out["text"]) and (out["cell"], out["text"]) not in self._reported:
                self._reported.add((out["cell"], out["text"]))
                self.problem(
                    f"{when}: cell {out['cell']} ({self.code_line(out['cell'])!r}) shows an error:\n"
                    + "\n".join(out["text"].strip().splitlines()[-6:])
                )

    def check_stray_reprs(self, when: str) -> None:
        for out in self.page.evaluate(_STRAY_REPRS):
            key = (out["cell"], out["text"])
            if key not in self._reported:
                self._reported.add(key)
                where = "its widget's output" if out["in_widget"] else "its output"
                self.problem(
                    f"{when}: cell {out['cell']} ({self.code_line(out['cell'])!r}) echoes a matplotlib object "
                    f"in {where}: {out['text']!r}"
                )

    # -- steps

    def open(self) -> None:
        """Open the notebook; wait for every cell, the kernel, and the committed widgets to render."""
        self.lab.trust(self.path)
        start = time.perf_counter()
        # ?reset: a fresh workspace, not the one the lab saved with the previous lesson's tabs
        self.page.goto(self.lab.url(f"lab/tree/{urllib.parse.quote(self.name)}?reset"), timeout=LOAD_LIMIT_S * 1000)
        cells = len(self.nb["cells"])
        self.wait_until(
            f"the {cells} cells did not all appear",
            lambda: self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").count() == cells,
            LOAD_LIMIT_S,
        )

        panels = self.page.locator(".jp-NotebookPanel").count()
        if panels != 1:
            self.problem(f"{panels} notebooks open in the lab instead of this one alone")

        def kernel_ready() -> bool:
            self.kernel = self.kernel or self.lab.kernel_of(self.name)
            return self.kernel_idle()

        self.wait_until("the kernel did not start", kernel_ready, LOAD_LIMIT_S)
        views = sum(
            WIDGET_VIEW in output.get("data", {}) for cell in self.nb["cells"] for output in cell.get("outputs", [])
        )
        no_id = [i + 1 for i, cell in enumerate(self.nb["cells"]) if "id" not in cell]
        if no_id and (self.nb["nbformat"], self.nb["nbformat_minor"]) >= (4, 5):
            # Jupyter gives such cells a random id on every read, so no signature ever matches: the
            # notebook opens untrusted, its committed widgets as plain text ("interactive(children=...")
            self.problem(
                f"cells {no_id} have no 'id' (nbformat 4.5 requires one), so the notebook can never be trusted "
                "and its committed widgets show as text: save it with ids (nbformat.validator.normalize, "
                "or save it from JupyterLab)"
            )
        elif views:
            try:
                self.wait_until(
                    f"only some of the {views} committed widget outputs rendered",
                    lambda: self.page.evaluate(_WIDGET_OUTPUTS) >= views,
                    30,
                )
            except AssertionError as err:
                self.problem(str(err))
        self.result.load_s = round(time.perf_counter() - start, 2)
        time.sleep(1.0)  # let the figures and the last widgets paint
        self.page.screenshot(path=self.shots / "committed.png")
        self.check_widget_errors("committed outputs")
        self.check_tracebacks("committed outputs")

    def run_all(self) -> None:
        """Edit > Clear Outputs of All Cells, then Run > Run All Cells; wait until no cell shows [*]."""
        self.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current").click()  # the lesson has the focus
        self.menu("Edit", "editmenu:clear-all")
        self.wait_until(
            "the outputs were not cleared",
            lambda: self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").count() == 0,
            30,
        )
        sources = ["".join(c["source"]) for c in self.nb["cells"] if c["cell_type"] == "code"]
        runnable = [bool(s.strip()) for s in sources]
        start = time.perf_counter()
        self.menu("Run", "runmenu:run-all")
        seen_busy = False

        def finished() -> bool:
            nonlocal seen_busy
            prompts = self.page.evaluate(_CODE_PROMPTS)
            busy = any("*" in p for p in prompts)
            numbered = all(re.fullmatch(r"\[\d+\]:", p) for p, r in zip(prompts, runnable, strict=False) if r)
            seen_busy = seen_busy or busy
            return (seen_busy or numbered) and not busy and self.kernel_idle()

        try:
            self.wait_until("Run All Cells did not finish", finished, RUN_ALL_LIMIT_S)
            time.sleep(1.0)
            self.wait_until("Run All Cells did not finish", finished, RUN_ALL_LIMIT_S)
        except AssertionError as err:
            self.problem(str(err))
            return
        finally:
            self.result.run_all_s = round(time.perf_counter() - start, 2)
        prompts = self.page.evaluate(_CODE_PROMPTS)
        code_cells = [i + 1 for i, c in enumerate(self.nb["cells"]) if c["cell_type"] == "code"]
        done = [bool(re.fullmatch(r"\[\d+\]:", p)) for p in prompts]
        skipped = [cell for cell, ran, r in zip(code_cells, done, runnable, strict=False) if r and not ran]
        if skipped:
            self.problem(f"Run All Cells did not run cells {skipped} (an earlier cell failed?)")
        self.check_tracebacks("after Run All Cells")
        self.check_stray_reprs("after Run All Cells")
        self.check_widget_errors("after Run All Cells")

    def readme_page_shot(self) -> None:
        """README: the lesson in JupyterLab, scrolled to its first widget."""
        first = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell:has(.widget-interact)").first
        first.evaluate("el => el.scrollIntoView({block: 'start'})")
        time.sleep(0.5)
        self.page.screenshot(path=self.readme / "lesson-in-jupyterlab.png")

    # -- widgets

    def signature(self, output) -> dict:
        return output.evaluate(_SIGNATURE)

    def shot(self, element, name: str) -> str | None:
        """Screenshot of ``element`` (None when it is empty and so has no area)."""
        box = element.bounding_box()
        if box is None or box["height"] < 2 or box["width"] < 2:
            return None
        element.screenshot(path=self.shots / name, animations="disabled", timeout=30_000)
        return f"{self.shots.name}/{name}"

    def act(self, control, kind: str) -> str:
        """Change one control as a reader would; returns what changed ("ways: 5 -> 6")."""
        if kind == "slider":
            handle = control.locator(".noUi-handle").first
            readout = control.locator(".widget-readout").first
            before = readout.inner_text().strip()
            now = float(handle.get_attribute("aria-valuenow"))
            key = "ArrowRight" if now < float(handle.get_attribute("aria-valuemax")) else "ArrowLeft"
            handle.focus()
            handle.press(key)
            self.wait_until("the slider did not move", lambda: readout.inner_text().strip() != before, 10, 0.1)
            return f"{before} -> {readout.inner_text().strip()} ({key})"
        if kind in ("dropdown", "select"):
            select = control.locator("select").first
            options = select.locator("option").all_inner_texts()
            index = select.evaluate("s => s.selectedIndex")
            select.select_option(index=(index + 1) % len(options))
            return f"{options[index]} -> {options[(index + 1) % len(options)]}"
        if kind == "checkbox":
            box = control.locator('input[type="checkbox"]').first
            before = box.is_checked()
            box.click()
            return f"{'on' if before else 'off'} -> {'off' if before else 'on'}"
        if kind == "radio":
            choice = control.locator('input[type="radio"]:not(:checked)').first
            label = choice.evaluate("i => i.parentElement.textContent.trim()")
            choice.click()
            return f"-> {label}"
        if kind == "toggle-buttons":
            button = control.locator("button:not(.mod-active)").first
            label = button.inner_text().strip()
            button.click()
            return f"-> {label}"
        if kind == "text":
            box = control.locator("input").first
            before = box.input_value()
            try:
                after = str(int(before) + 1)
            except ValueError:
                try:
                    after = str(float(before) + 1)
                except ValueError:
                    after = before + "x"
            box.fill(after)
            box.press("Enter")
            return f"{before} -> {after}"
        control.click()  # button, toggle-button
        return "click"

    def wait_for_response(self, output, before: dict, start: float) -> tuple[float | None, float | None]:
        """``(first change, response)`` in seconds since ``start``; None: not seen within WIDGET_PATIENCE_S."""
        first = None
        while True:
            elapsed = time.perf_counter() - start
            now = self.signature(output)
            if first is None and now["hash"] != before["hash"]:
                first = elapsed
            if first is not None and self.kernel is not None:
                # the output changed; the response ends when the kernel has finished the callback (it may
                # print "training ..." first and draw its figure seconds later)
                if not self.lab.kernel_done(self.kernel, max(WIDGET_PATIENCE_S - elapsed, 1.0)):
                    return round(first, 2), None
                elapsed = time.perf_counter() - start
                # the last messages reach the page after the reply: wait for the output to settle (<= 10 s)
                last, settle = self.signature(output)["hash"], time.monotonic() + 10
                while time.monotonic() < settle:
                    time.sleep(0.5)
                    if (now_hash := self.signature(output)["hash"]) == last:
                        break
                    last = now_hash
                return round(first, 2), round(elapsed, 2)
            if elapsed > WIDGET_PATIENCE_S:
                return (None if first is None else round(first, 2)), None
            time.sleep(0.2)

    def exercise_widgets(self) -> None:
        """Move every control once and check that its output changes within the limit."""
        found = self.page.evaluate(_FIND_CONTROLS)
        for odd in found["unknown"]:
            self.problem(f"cell {odd['cell']}: a widget this test cannot drive ({odd['classes']}): extend act()")
        controls = found["controls"]
        groups: dict[str, list[dict]] = {}
        for c in controls:
            groups.setdefault(c["interact"] or f"cell{c['cell']}-{c['id']}", []).append(c)
        readme_done = self.readme is None
        for group in groups.values():
            button = next((c for c in group if c["kind"] == "button"), None) if group[0]["manual"] else None
            # interact_manual: the button first (its output starts empty), then each control + the button
            order = ([button] if button else []) + [c for c in group if c is not button]
            for c in order:
                shot_readme = not readme_done
                readme_done = True
                self.exercise(c, button if (button and c is not button) else None, shot_readme)

    def exercise(self, c: dict, then_click: dict | None, readme_shots: bool) -> None:
        n = len(self.result.widgets) + 1
        control = self.page.locator(f'[data-mll-control="{c["id"]}"]')
        where = f"cell {c['cell']} ({self.code_line(c['cell'])!r}), {c['kind']} {c['label']!r}"
        if c["output"] is None:
            self.problem(f"{where}: no Output widget shows this control's effect")
            return
        output = self.page.locator(f'[data-mll-output="{c["output"]}"]')
        container = self.page.locator(f'.widget-interact:has([data-mll-control="{c["id"]}"])').first
        output.scroll_into_view_if_needed()
        before = self.signature(output)
        stem = f"w{n:02d}-cell{c['cell']:02d}-{re.sub(r'[^A-Za-z0-9]+', '_', c['label'] or c['kind']).strip('_')}"
        before_shot = self.shot(output, f"{stem}-before.png")
        if readme_shots:
            container.screenshot(path=self.readme / "widget-before.png", animations="disabled")
        start = time.perf_counter()
        change = self.act(control, c["kind"])
        if then_click is not None:
            self.page.locator(f'[data-mll-control="{then_click["id"]}"]').click()
            change += f", then {then_click['label']!r}"
        first, response = self.wait_for_response(output, before, start)
        after_shot = self.shot(output, f"{stem}-after.png")
        if readme_shots:
            container.screenshot(path=self.readme / "widget-after.png", animations="disabled")
        after = self.signature(output)
        what = [name for name, key in (("text", "text_hash"), ("figure", "image_hash")) if after[key] != before[key]]
        pixels = None  # whether the screenshots differ (None: the output was empty before or after)
        if before_shot and after_shot:
            pixels = pixels_differ(self.shots.parent / before_shot, self.shots.parent / after_shot)
        changed = ", ".join(what) + ("" if pixels is None else "; pixels differ" if pixels else "; SAME PIXELS")
        ok = bool(what) and pixels is not False and response is not None and response <= WIDGET_LIMIT_S
        self.result.widgets.append(
            WidgetResult(
                notebook=self.result.notebook,
                cell=c["cell"],
                code=self.code_line(c["cell"]),
                kind=c["kind"],
                label=c["label"],
                change=change,
                first_change_s=first,
                response_s=response,
                changed=changed,
                before=before_shot,
                after=after_shot,
                ok=ok,
            )
        )
        if not what:
            self.problem(f"{where}: {change} did not change its output within {WIDGET_PATIENCE_S:.0f} s")
        elif pixels is False:
            self.problem(f"{where}: {change} changed the output's {changed}, but its screenshots are identical")
        elif response is None:
            self.problem(
                f"{where}: {change} changed the output but the kernel was still busy after {WIDGET_PATIENCE_S:.0f} s"
            )
        elif response > WIDGET_LIMIT_S:
            self.problem(
                f"{where}: {change} took {response:.0f} s to update its output (limit {WIDGET_LIMIT_S:.0f} s; "
                f"first change after {first:.0f} s)"
            )
        if response is None:  # let a slow callback finish before the next control
            try:
                self.wait_until("the kernel stayed busy", self.kernel_idle, RUN_ALL_LIMIT_S)
            except AssertionError as err:
                self.problem(str(err))


def pixels_differ(a: Path, b: Path) -> bool:
    from PIL import Image, ImageChops

    with Image.open(a) as x, Image.open(b) as y:
        if x.size != y.size:
            return True
        return ImageChops.difference(x.convert("RGB"), y.convert("RGB")).getbbox() is not None
