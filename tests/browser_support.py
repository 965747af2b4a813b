"""Driving JupyterLab in headless Chromium the way a student does.

`LabServer` runs `jupyter lab` from this project's virtual environment on a temporary
course copy; `NotebookUI` opens one notebook in a Playwright page and works it through
the page only: menus, the CodeMirror editor, the keyboard and nbgrader's Validate button.
What it reads back is what the page renders (output text, images, the Validate dialog).
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium on a machine with no route to Google: no background traffic, no sandbox
# (CI runs as root), software rendering.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Signs of a Python traceback in rendered output: the header, a frame line, IPython's
# separator line.
TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|^-{20,}", re.M
)


def ensure_chromium() -> str | None:
    """Install Debian's Chromium if missing (as root); the reason to skip if it cannot be."""
    if CHROMIUM.exists():
        return None
    if os.geteuid() != 0:
        return f"{CHROMIUM} is missing and installing it needs root (apt-get install chromium)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
        check=True,
        env=env,
    )
    return None if CHROMIUM.exists() else f"apt-get installed chromium but {CHROMIUM} is missing"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    """`jupyter lab` on 127.0.0.1 with a random token, serving `root`."""

    root: Path
    port: int
    token: str
    proc: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, root: Path, state: Path, *, timeout: float = 120) -> LabServer:
        """Start the server with its own config, data and runtime folders under `state`.

        The kernel is this environment's python3 (the course package is importable there);
        nbgrader's server and lab extensions come from the environment, so they stay on.
        The working directory is the course root: nbgrader's Validate handler reads
        `nbgrader_config.py` from there.
        """
        dirs = {
            "JUPYTER_CONFIG_DIR": state / "config",
            "JUPYTER_DATA_DIR": state / "data",
            "JUPYTER_RUNTIME_DIR": state / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": state / "settings",
            "JUPYTERLAB_WORKSPACES_DIR": state / "workspaces",
            "IPYTHONDIR": state / "ipython",
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        # No news or update checks: nothing should reach out, and no toast over the screenshots.
        notification = state / "settings" / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True, exist_ok=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        env = dict(os.environ, **{k: str(v) for k, v in dirs.items()})
        env.pop("JUPYTER_PATH", None)
        env["PYTHONUNBUFFERED"] = "1"
        port, token = _free_port(), secrets.token_hex(16)
        log_path = state / "jupyter-lab.log"
        jupyter = Path(sys.executable).with_name("jupyter")
        cmd = [
            str(jupyter),
            "lab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--port-retries=0",
            f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = cls(root, port, token, proc, log_path)
        server._wait_ready(timeout)
        return server

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str):
        req = urllib.request.Request(
            f"{self.base}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited:\n{self.log()}")
            try:
                self.api("GET", "/api/status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --- one notebook in the page ---------------------------------------------------------------

_CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"
_STATUS = "#jp-main-statusbar"

_JS_PROMPTS = f"""() => Array.from(document.querySelectorAll({json.dumps(_CELLS)}),
    c => (c.querySelector('.jp-InputPrompt') || {{}}).textContent || '')"""

_JS_OUTPUTS = f"""(i) => {{
    const cell = document.querySelectorAll({json.dumps(_CELLS)})[i];
    return Array.from(cell.querySelectorAll('.jp-OutputArea-output'), o => ({{
        mime: o.getAttribute('data-mime-type') || '',
        text: o.textContent,
        images: Array.from(o.querySelectorAll('img'),
            im => [im.naturalWidth, im.naturalHeight]),
    }}));
}}"""

_JS_EDITOR_TEXT = f"""(i) => {{
    const cell = document.querySelectorAll({json.dumps(_CELLS)})[i];
    return Array.from(cell.querySelectorAll('.jp-InputArea .cm-line'), l => l.textContent)
        .join('\\n');
}}"""


@dataclass
class Output:
    mime: str
    text: str
    images: list

    @property
    def is_error(self) -> bool:
        return self.mime == "application/vnd.jupyter.stderr"


def idle(status_text: str) -> bool:
    return "| Idle" in status_text


def menu(page, name: str, command: str) -> None:
    """Click a menu of the menu bar, then one of its items (by command id)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{name}$")).click()
    page.locator(f"li.lm-Menu-item[data-command='{command}']").click()


def open_lab(page, server: LabServer, *, timeout: float = 120) -> None:
    """Load JupyterLab in the page (logging in with the token), with the file browser folded.

    `reset` starts from an empty workspace; JupyterLab drops it from the address once the
    layout is restored, and only then does folding the side bar stick.
    """
    page.goto(f"{server.base}/lab?reset&token={server.token}")
    page.wait_for_url(re.compile(r"/lab$"), timeout=timeout * 1000)
    page.wait_for_selector(_STATUS, timeout=timeout * 1000)
    fold_file_browser(page)


def fold_file_browser(page) -> None:
    """Click the file browser's side-bar tab until the side panel is hidden (more room)."""
    left = page.locator("#jp-left-stack")
    for _ in range(20):
        if "lm-mod-hidden" in (left.get_attribute("class") or ""):
            return
        current = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if current.count():
            current.first.click()
        page.wait_for_timeout(250)


class NotebookUI:
    """One notebook opened in a page; cell indices are the notebook's own."""

    def __init__(self, page, server: LabServer, path: str, ncells: int):
        self.page, self.server, self.path, self.ncells = page, server, path, ncells

    # Opening and closing ------------------------------------------------------------
    def menu(self, name: str, command: str) -> None:
        menu(self.page, name, command)

    def open(self, *, timeout: float = 120) -> None:
        """File → Open from Path…, then wait for the cells and an idle kernel."""
        self.menu("File", "filebrowser:open-path")
        dialog = self.page.locator(".jp-Dialog")
        dialog.locator("input").fill(self.path)
        dialog.locator(".jp-mod-accept").click()
        self.page.wait_for_function(
            f"n => document.querySelectorAll({json.dumps(_CELLS)}).length === n",
            arg=self.ncells,
            timeout=timeout * 1000,
        )
        self.wait_idle(timeout)
        fold_file_browser(self.page)  # Open from Path shows the file browser again

    def close(self) -> None:
        """Save, then File → Close and Shut Down (the kernel stops with the tab)."""
        self.save()
        panels = self.page.locator(".jp-NotebookPanel").count()
        self.menu("File", "filemenu:close-and-cleanup")
        self.page.locator(".jp-Dialog .jp-mod-accept").click()
        self.page.wait_for_function(
            "n => document.querySelectorAll('.jp-NotebookPanel').length < n", arg=panels
        )

    def status(self) -> str:
        return self.page.inner_text(_STATUS)

    def wait_idle(self, timeout: float = 120) -> None:
        self.page.wait_for_function(
            f"() => (document.querySelector({json.dumps(_STATUS)})?.innerText || '')"
            ".includes('| Idle')",
            timeout=timeout * 1000,
        )

    # Reading -------------------------------------------------------------------------
    def prompts(self) -> list[str]:
        return self.page.evaluate(_JS_PROMPTS)

    def outputs(self, i: int) -> list[Output]:
        return [Output(**o) for o in self.page.evaluate(_JS_OUTPUTS, i)]

    def text(self, i: int) -> str:
        return "".join(o.text if o.text.endswith("\n") else o.text + "\n" for o in self.outputs(i))

    def editor_text(self, i: int) -> str:
        return self.page.evaluate(_JS_EDITOR_TEXT, i)

    def cell(self, i: int):
        return self.page.locator(_CELLS).nth(i)

    # Running -------------------------------------------------------------------------
    def _wait_ran(
        self, watch: list[int], before: list[str], timeout: float, settle: float = 1.5
    ) -> None:
        """Until every watched cell shows a new execution count and the notebook has settled.

        Settled: no cell queued or running (`[*]`), the kernel idle, and the prompts unchanged
        for `settle` seconds (between two queued cells the kernel is briefly idle).
        """
        deadline = time.monotonic() + timeout
        quiet_since, last = None, None
        while time.monotonic() < deadline:
            now = self.prompts()
            busy = any("*" in p for p in now)
            changed = all(now[i] != before[i] and re.search(r"\[\d+\]", now[i]) for i in watch)
            if changed and not busy and idle(self.status()):
                if now != last:
                    quiet_since, last = time.monotonic(), now
                elif time.monotonic() - quiet_since >= settle:
                    return
            else:
                quiet_since, last = None, None
            time.sleep(0.25)
        raise TimeoutError(f"cells {watch} did not finish within {timeout:.0f} s: {self.prompts()}")

    def run_all(self, *, first_code_cell: int, timeout: float = 300) -> None:
        """Run → Run All Cells, from the menu bar; wait until the kernel has stopped."""
        before = self.prompts()
        self.menu("Run", "runmenu:run-all")
        self._wait_ran([first_code_cell], before, timeout)

    def type_into(self, i: int, code: str) -> None:
        """Replace cell i's code by typing into its editor: click, select all, type."""
        editor = self.cell(i).locator(".jp-InputArea .cm-content")
        editor.scroll_into_view_if_needed()
        editor.click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.press("Delete")
        self.page.keyboard.insert_text(code)
        got = self.editor_text(i)
        if got.strip() != code.strip():
            raise AssertionError(f"the editor of cell {i} holds something else:\n{got}")

    def run_with_next(self, i: int, *, timeout: float = 120) -> None:
        """Shift+Enter in cell i (run, move on), then Shift+Enter again on the next cell."""
        before = self.prompts()
        self.cell(i).locator(".jp-InputArea .cm-content").click()
        self.page.keyboard.press("Shift+Enter")
        self.page.keyboard.press("Shift+Enter")
        self._wait_ran([i, i + 1], before, timeout, settle=0.75)

    def save(self, *, timeout: float = 30) -> None:
        """File → Save File; wait until the tab no longer shows unsaved changes."""
        self.menu("File", "docmanager:save")
        self.page.wait_for_function(
            "() => !document.querySelector('.lm-DockPanel-tabBar .lm-mod-current.jp-mod-dirty')",
            timeout=timeout * 1000,
        )

    def validate(self, *, timeout: float = 300) -> str:
        """Press nbgrader's Validate button; the text of the dialog it opens."""
        self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .validate-button").click()
        dialog = self.page.locator(".jp-Dialog")
        dialog.wait_for(state="visible", timeout=timeout * 1000)
        return dialog.inner_text()

    def close_dialog(self) -> None:
        self.page.locator(".jp-Dialog .jp-mod-accept").click()
        self.page.locator(".jp-Dialog").wait_for(state="detached")

    # Pictures ------------------------------------------------------------------------
    def screenshot(self, path: Path, *, bottom: int | None = None) -> Path:
        """The window; with `bottom`, scrolled so that cell (and its output) ends the view."""
        if bottom is not None:
            # Twice: off-screen cells are laid out only when scrolled past, which moves the target.
            for _ in range(2):
                self.cell(bottom).evaluate("c => c.scrollIntoView({block: 'end'})")
                self.page.wait_for_timeout(300)
            self.cell(bottom).evaluate("c => c.closest('.jp-WindowedPanel-outer')?.scrollBy(0, 24)")
            self.page.wait_for_timeout(200)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path


# --- answers ------------------------------------------------------------------------------


def defined_names(code: str) -> list[str]:
    """Top-level function names an answer cell defines, in order."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _replace(lines: list[bytes], node: ast.expr, new: str) -> None:
    """Replace the exact source span of `node` (ast offsets are UTF-8 byte offsets)."""
    first, last = node.lineno - 1, node.end_lineno - 1
    head = lines[first][: node.col_offset]
    tail = lines[last][node.end_col_offset :]
    lines[first : last + 1] = [head + new.encode() + tail]


def sign_flipped(code: str, name: str) -> str | None:
    """`code` with the last `return` of function `name` negated (first item of a tuple).

    A realistic wrong answer for any question: a sign error in the student's result.
    None if the function has no `return` with a value.
    """
    tree = ast.parse(code)
    fn = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name),
        None,
    )
    if fn is None:
        return None
    returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None]
    if not returns:
        return None
    value = max(returns, key=lambda r: (r.lineno, r.col_offset)).value
    target = value.elts[0] if isinstance(value, ast.Tuple) and value.elts else value
    lines = code.encode().split(b"\n")
    segment = ast.get_source_segment(code, target)
    _replace(lines, target, f"-({segment})")
    return b"\n".join(lines).decode()


def copy_course(release: Path, config: Path, dest: Path, assignments: list[str]) -> Path:
    """A student's folder: nbgrader_config.py and one folder per released assignment."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(config, dest / "nbgrader_config.py")
    for a in assignments:
        shutil.copytree(release / a, dest / a)
    return dest
