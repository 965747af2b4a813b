"""Evidence of a kernel reaching outside its own directory during grading.

The kernel sandbox (:mod:`.sandbox`) already *prevents* a submission from reading the
course directory; this module *records the attempt*, so that the submission can be
flagged as tampered. The grading worker creates one FIFO per submission in a directory
only it can enter (:class:`Watch`); the forked kernel opens the FIFO's writing end while
it is still the grader's user (before the sandbox drops its privileges), then installs
a Python audit hook (:func:`install`). From the first notebook cell on, the hook reports
every file opened, directory listed, working directory changed or program started with
a path outside the places a kernel legitimately reads: its own directory, the Python
installation, the course package and the system's read-only trees (``/usr``, ``/etc``,
``/proc/self``, ...), and every network connection it tries (:data:`NETWORK_EVENT`).
Imports searching ``sys.path`` are not reported. Reports are JSON lines, at most
:data:`MAX_REPORTS` distinct ones per kernel; the worker reads them when the submission
is done (:meth:`Watch.finish`).

Best effort by nature: code in the same process can close the reporting descriptor, and
reads by programs it starts are seen only through their command lines. That is why it
is evidence on top of the sandbox, never the protection itself.

The kernel side runs in the fork server's child and uses the standard library only (this
file is loaded there as a plain file, like :mod:`.sandbox`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile

MAX_REPORTS = 20
MAX_PATH = 160

# Read-only system trees every Python program may touch (fonts, locales, time zones,
# CPU information, its own /proc entry). /proc/<other pid> is not among them.
SYSTEM = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/sys", "/dev")
PROC_OK = ("/proc/self", "/proc/thread-self")
# /proc entries that describe the machine rather than a process.
PROC_FILES = (
    "cpuinfo",
    "meminfo",
    "stat",
    "loadavg",
    "uptime",
    "version",
    "mounts",
    "filesystems",
    "sys",
    "pressure",
)

# Audit events naming a path (their first argument) or a command line.
PATH_EVENTS = (
    "open",
    "os.listdir",
    "os.scandir",
    "os.chdir",
    "glob.glob",
    "os.chmod",
    "os.remove",
    "os.rename",
    "os.mkdir",
    "os.rmdir",
    "os.link",
    "os.symlink",
    "os.truncate",
    "os.utime",
    "os.chown",
    "os.listxattr",
    "os.getxattr",
    "shutil.copyfile",
    "shutil.copytree",
    "shutil.rmtree",
    "shutil.move",
    "shutil.make_archive",
    "shutil.unpack_archive",
    "sqlite3.connect",
)
# A connection the kernel tries: reported with its address (host:port, or the path of a
# Unix socket outside the kernel's places). Sandboxed kernels have no network, so the
# grader names it as refused.
NETWORK_EVENT = "socket.connect"
COMMAND_EVENTS = (
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "pty.spawn",
    "os.startfile",
)

# Grader side ---------------------------------------------------------------------------


class Watch:
    """One grading worker's side: a fresh FIFO per submission, read when it is done."""

    def __init__(self, extra_allowed: list[str] | None = None):
        # named after this process, so that a run killed before removing it is cleared
        # by the next (:mod:`.litter`)
        self.dir = tempfile.mkdtemp(prefix=f"autograder-audit-{os.getpid()}-")
        os.chmod(self.dir, 0o700)
        self.extra_allowed = [os.path.realpath(p) for p in extra_allowed or []]
        self._n = 0
        self._fd: int | None = None
        self._path: str | None = None

    def start(self, own_dir: str | None = None) -> dict:
        """The fork request's ``audit`` field for the next kernels (one submission)."""
        self._close_fifo()
        self._n += 1
        self._path = os.path.join(self.dir, f"{self._n}.fifo")
        os.mkfifo(self._path, 0o600)
        # Open the reading end first: the kernel's non-blocking open needs a reader.
        self._fd = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK)
        return {"fifo": self._path, "own": own_dir, "allow": self.extra_allowed}

    def finish(self) -> list[str]:
        """What the submission's kernels reported, one short description per attempt."""
        data = b""
        if self._fd is not None:
            while True:
                try:
                    chunk = os.read(self._fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
                if len(data) > 1 << 20:
                    break
        self._close_fifo()
        return parse(data)

    def _close_fifo(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            self._path = None

    def close(self) -> None:
        self._close_fifo()
        shutil.rmtree(self.dir, ignore_errors=True)


def parse(data: bytes) -> list[str]:
    """Reports (JSON lines from :func:`install`'s hook) as distinct short descriptions.

    The kernel wrote them, so anything goes: lines that are not reports are ignored.
    """
    out: list[str] = []
    for line in data.splitlines():
        try:
            report = json.loads(line)
            event, path = str(report["event"]), str(report["path"])
        except (ValueError, KeyError, TypeError):
            continue
        text = f"{_printable(event, 40)} {_printable(path, MAX_PATH)}"
        if text not in out:
            out.append(text)
        if len(out) >= MAX_REPORTS:
            break
    return out


def _printable(text: str, limit: int) -> str:
    text = json.dumps(text, ensure_ascii=True)[1:-1]  # no control characters, no markup
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Kernel side ---------------------------------------------------------------------------


def open_fifo(spec: dict) -> int | None:
    """Open the writing end (in the child, before it drops privileges)."""
    try:
        fd = os.open(spec["fifo"], os.O_WRONLY | os.O_NONBLOCK)
    except (OSError, KeyError, TypeError):
        return None
    os.set_inheritable(fd, False)
    return fd


def install(spec: dict, fd: int | None) -> None:
    """Install the reporting audit hook in this process (the kernel, before ipykernel)."""
    if fd is None:
        return
    own = spec.get("own") or os.getcwd()
    allowed = {os.path.realpath(own), os.path.abspath(own)}
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *(spec.get("allow") or [])):
        allowed.add(os.path.realpath(p))
        allowed.add(os.path.abspath(p))
    # Where libraries keep their configuration and caches (inside its own directory when
    # the kernel is sandboxed; the grader's own when it is not).
    for name in (
        "IPYTHONDIR",
        "MPLCONFIGDIR",
        "JUPYTER_RUNTIME_DIR",
        "JUPYTER_CONFIG_DIR",
        "JUPYTER_DATA_DIR",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
    ):
        value = os.environ.get(name)
        if value:
            allowed.add(os.path.abspath(value))
    home = os.environ.get("HOME")
    if home and not _inside(os.path.abspath(home), own):
        for sub in (".cache", ".config", ".local", ".ipython", ".jupyter", ".matplotlib"):
            allowed.add(os.path.join(os.path.abspath(home), sub))
    # tempfile probes its directory by writing a file there, once, when first asked (as
    # ipykernel does for the first cell): ask now, before the hook is armed.
    tempfile.gettempdir()
    # Places that stay outside even inside an allowed one (the course or the checkout
    # under an allowed /tmp), but for what is allowed inside them (the package, the venv).
    denied = tuple(
        sorted({os.path.realpath(p) for p in spec.get("deny") or []} - {os.path.realpath(own)})
    )
    within = tuple(sorted(a for a in allowed if any(_inside(a, d) for d in denied)))
    hook = _make_hook(fd, tuple(sorted(allowed)), os.getpid(), denied, within)
    sys.addaudithook(hook)


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _make_hook(
    fd: int,
    allowed: tuple[str, ...],
    pid: int,
    denied: tuple[str, ...] = (),
    within: tuple[str, ...] = (),
):
    # Everything the hook uses is bound here: a notebook patching os, json or sys later
    # does not change what the hook sees or how it writes.
    paths = frozenset(PATH_EVENTS)
    commands = frozenset(COMMAND_EVENTS)
    network = NETWORK_EVENT
    getcwd, fspath, write = os.getcwd, os.fspath, os.write
    join, normpath = os.path.join, os.path.normpath
    dumps, getframe = json.dumps, sys._getframe
    proc_ok = (*PROC_OK, f"/proc/{pid}")
    own_cells = f"ipykernel_{pid}"
    system = SYSTEM
    proc_files = frozenset(PROC_FILES)
    words, limit = _words, MAX_REPORTS
    seen: set[str] = set()
    state = {"armed": False, "sent": 0}

    def is_cell(name) -> bool:
        # ipykernel names a cell's code <tmp>/ipykernel_<pid>/<hash>.py; IPython alone,
        # <ipython-input-N-...>.
        if not isinstance(name, str):
            return False
        if name.startswith("<ipython-input-"):
            return True
        parts = name.rsplit("/", 2)
        return (
            len(parts) == 3
            and parts[1].startswith("ipykernel_")
            and parts[1][10:].isdigit()
            and parts[2].endswith(".py")
        )

    def outside(raw) -> str | None:
        if isinstance(raw, int | float) or raw is None:
            return None  # a file descriptor
        try:
            text = fspath(raw)
        except TypeError:
            return None
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogateescape")
        if not text or text.startswith(("<", "\x00")):
            return None
        path = normpath(join(getcwd(), text))
        if is_cell(path) and path.rsplit("/", 2)[1] == own_cells:
            return None  # its own cells' code, read back for a traceback
        for top in denied:
            if path == top or path.startswith(top + "/"):
                for ok in within:
                    if path == ok or path.startswith(ok + "/"):
                        return None
                return text
        for top in allowed:
            if path == top or path.startswith(top + "/"):
                return None
        for top in system:
            if path == top or path.startswith(top + "/"):
                return None
        if path.startswith("/proc/"):
            rest = path[6:].split("/", 1)[0]
            if rest in proc_files:
                return None
            for top in proc_ok:
                if path == top or path.startswith(top + "/"):
                    return None
        return text

    def from_import_machinery() -> bool:
        # The code that raised the event (0: here, 1: report, 2: the hook): importlib
        # searching sys.path, or reading a module it found, is not the notebook reading.
        try:
            name = getframe(3).f_code.co_filename
        except ValueError:
            return False
        return name.startswith(("<frozen importlib", "<frozen zipimport"))

    def report(event: str, path: str) -> None:
        key = event + "\x00" + path
        if key in seen or state["sent"] >= limit:
            return
        if from_import_machinery():
            return
        seen.add(key)
        state["sent"] += 1
        line = dumps({"event": event, "path": path[:1000]}) + "\n"
        try:
            write(fd, line.encode("utf-8", "replace"))
        except OSError:
            pass

    def hook(event, args):
        try:
            if not state["armed"]:
                if event == "exec" and args and is_cell(getattr(args[0], "co_filename", "")):
                    state["armed"] = True
                return
            if event in paths:
                if args:
                    found = outside(args[0])
                    if found is not None:
                        report(event, found)
                    if len(args) > 1 and event in (
                        "os.rename",
                        "os.link",
                        "os.symlink",
                        "shutil.copyfile",
                        "shutil.copytree",
                        "shutil.move",
                    ):
                        found = outside(args[1])
                        if found is not None:
                            report(event, found)
            elif event == network:
                address = args[1] if len(args) > 1 else None
                if isinstance(address, tuple) and len(address) >= 2:
                    report(event, f"{address[0]}:{address[1]}")
                elif address is not None:
                    found = outside(address)
                    if found is not None:
                        report(event, found)
            elif event in commands:
                for word in words(args):
                    if "/" in word:
                        found = outside(word)
                        if found is not None:
                            report(event, found)
        except Exception:
            pass  # never break the kernel

    return hook


def _words(args) -> list[str]:
    """Strings in a command event's arguments, split on whitespace (a shell command)."""
    out: list[str] = []

    def walk(value, depth=0):
        if depth > 3 or len(out) > 200:
            return
        if isinstance(value, bytes):
            value = value.decode("utf-8", "surrogateescape")
        if isinstance(value, str):
            out.extend(value.split())
        elif isinstance(value, list | tuple):
            for v in value[:100]:
                walk(v, depth + 1)

    for a in args[:3]:  # executable/path, args, cwd — not the environment
        walk(a)
    return out
