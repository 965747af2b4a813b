"""A warm interpreter that forks a fresh IPython kernel per request.

Starting a kernel that imports torch and matplotlib costs seconds of CPU, almost all of
it imports. The fork server pays that once: it imports the heavy libraries, never runs
user code and never starts a thread, then forks one child per kernel. Each child starts
from the same pristine state, so nothing flows from one student's kernel to another's
(a child's changes die with it). A child gets its own session and process group (a
timeout kills everything it started), the working directory and environment the kernel
manager asked for, and then runs ipykernel exactly as ``python -m ipykernel_launcher``
would.

Protocol: one Unix-socket connection per kernel, JSON lines.
  client -> {"argv": [...], "cwd": "...", "env": {...}, "rlimits": {"CPU": [soft, hard]}}
  server -> {"pid": 1234}                      or {"error": "..."}
  server -> {"exit": 1234, "status": -9}       when the kernel has ended
              (status as in subprocess: exit code, or minus the signal number)
Closing the connection kills the kernel's process group, so a kernel never outlives the
worker that asked for it; the server's children die with the server (PR_SET_PDEATHSIG).

Run as ``python .../autograder/batch/forkserver.py SOCKET`` (a script: of the course
package it imports the checking helpers, never the per-assignment modules); it prints
``ready`` on stdout once warm. Given ``--learn NOTEBOOK...`` it also learns, in a
throwaway child and while already serving, which modules the instructor's notebooks
import lazily, and preloads those too. Given ``--workers FD:LOG...`` it also starts the
grading workers (:func:`start_worker_template`), forked once torch and matplotlib are
imported, so that workers and kernels pay those imports once between them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback

# Values a kernel would set itself; set before the imports so that library state read at
# import time (matplotlib's backend, OpenMP's pool size) is what a fresh kernel would see.
KERNEL_ENV = {
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}

# Imported once in the server. Only libraries with no import-time side effect on a running
# IPython shell: matplotlib_inline.backend_inline (registers with the shell when imported)
# stays out. The course's own modules follow (COURSE_PRELOAD).
PRELOAD = (
    # (the grading workers are forked once the libraries up to WORKERS_FORK_BEFORE are in)
    "numpy",
    "torch",
    # torch imports these on first use (a non-scalar backward, `2 / x`, forward-mode AD):
    # about 1.4 s that the kernels forked before learning has finished would each pay
    "torch.fx.experimental.symbolic_shapes",
    "torch._dynamo",
    "torch._decomp.decompositions_for_jvp",
    "matplotlib",
    "matplotlib.pyplot",
    "matplotlib.backends.backend_agg",
    "PIL.PngImagePlugin",
    "IPython",
    "IPython.core.interactiveshell",
    "IPython.core.completer",
    "IPython.core.pylabtools",
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "jupyter_client.session",
    "zmq.asyncio",
    "tornado.ioloop",
    "comm",
    # imported lazily by `%matplotlib inline` and by torch while the course's notebooks run
    # (what learning found beyond the rest of this list)
    "IPython.core.magic_arguments",
    "IPython.core.magics.pylab",
    # loaded by IPython when a notebook's first line magic (`%matplotlib`) is looked up
    "IPython.core.magics.execution",
    "IPython.core.magics.ast_mod",
    "IPython.utils.module_paths",
    "torch._subclasses.schema_check_mode",
    # imported while a kernel initialises
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "IPython.utils.wildcard",
    "jupyter_client.localinterfaces",
    "pdb",
    "psutil",
    "sqlite3",
    "tornado.platform.asyncio",
)

# The first module the grading workers do not need: IPython and ipykernel are the kernels'.
WORKERS_FORK_BEFORE = "IPython"

# The course's own checking helpers, which the first cell of every graded notebook
# imports (~30 ms a kernel). Importing them touches no shell (the short display for failed
# checks is registered in the kernel's shell when a check first fails), reads nothing of a
# kernel's environment and starts no thread. The per-assignment modules
# (``autograder.assignments.aNN``) stay out: when imported they read whether the grader
# decides the hidden tests, which is the kernel's environment, not the server's.
COURSE_PRELOAD = (
    "autograder",
    "autograder.checking.feedback",
    "autograder.checking.checks",
    "autograder.checking.compare",
    "autograder.checking.diagnose",
    "autograder.checking.forbid",
    "autograder.graphs",
    "autograder.checking.jacobians",
    "autograder.checking.params",
    "autograder.checking.plots",
    "autograder.checking.sampling",
    "autograder.kernel.wire",
    "autograder.kernel.remote",
    "autograder.assignments",
)


def warm(preload=PRELOAD) -> list[str]:
    """Import the heavy libraries and touch their lazy caches; return what failed."""
    failed = []
    for name in preload:
        try:
            __import__(name)
        except Exception as exc:  # a missing optional library only costs speed
            failed.append(f"{name}: {exc}")
    return failed


def touch() -> None:
    """Fill caches that every kernel would otherwise fill for itself; run after all imports
    (inspect's module-by-file map covers the modules loaded so far)."""
    # The host's network interfaces, which every kernel looks up once.
    with contextlib.suppress(Exception):
        from jupyter_client import localinterfaces

        localinterfaces.localhost()
    # A first traceback: compiles pygments' lexers and styles that IPython formats with.
    with contextlib.suppress(Exception):
        from IPython.core import ultratb

        try:
            raise ValueError("warm-up")
        except ValueError:
            for theme in ("neutral", "linux"):
                ultratb.AutoFormattedTB(mode="Context", theme_name=theme).structured_traceback(
                    *sys.exc_info()
                )
    # First figure: loads the font cache, FreeType faces and the PNG writer. Object-oriented
    # API only, so pyplot's state (current figure, chosen backend) stays untouched.
    with contextlib.suppress(Exception):
        import io

        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(2, 2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], label="warm")
        ax.set_xlabel("x")
        ax.legend()
        fig.savefig(io.BytesIO(), format="png")
    with contextlib.suppress(Exception):
        import inspect

        inspect.getmodule(touch)


# --- learning what kernels import ------------------------------------------------------

# Work every kernel of this course does; run (in a throwaway child) with the instructor's
# notebooks, to learn which modules torch and matplotlib import lazily on first use.
PROBE = """
import io
import torch
x = torch.linspace(0.5, 2.0, 5, requires_grad=True)
y = x**2 + torch.sin(x)
y.backward(torch.ones_like(y))
torch.autograd.grad((x**3).sum(), x)
torch.autograd.functional.jacobian(lambda v: v**2, x.detach())
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([0, 1], [0, 1], label="a")
ax.legend()
fig.savefig(io.BytesIO(), format="png")
plt.close("all")
"""

# Never learned: the inline backend registers with the running shell when imported, which
# the server does not have; the course's package is preloaded by name (COURSE_PRELOAD),
# and its per-assignment modules must not be.
NEVER_PRELOAD = ("autograder", "matplotlib_inline", "__main__", "__mp_main__")


def _run_probe(notebooks: list[str]) -> None:
    import json as _json

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    sources = [PROBE]
    for path in notebooks:
        with contextlib.suppress(Exception), open(path, encoding="utf-8") as fh:
            nb = _json.load(fh)
            for cell in nb.get("cells", []):
                if cell.get("cell_type") == "code":
                    src = cell.get("source", "")
                    sources.append("".join(src) if isinstance(src, list) else src)
    for src in sources:
        with contextlib.suppress(BaseException):
            shell.run_cell(src, store_history=False, silent=True)


def start_learning(notebooks: list[str], folder: str) -> tuple[int, int]:
    """Fork a throwaway child that runs the probe and `notebooks` (trusted: the
    instructor's), in `folder`, and writes the modules they imported, as JSON, to a pipe.
    Returns (pid, read end). Nothing the child runs touches the server itself."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.setsid()
            _processes().die_with_parent()
            # Spare CPU only: it competes with the workers' start-up and the first kernels,
            # which gain at most a few milliseconds each from what it learns.
            os.nice(19)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.chdir(folder)
            before = set(sys.modules)
            _run_probe(notebooks)
            names = sorted(set(sys.modules) - before)
            data = json.dumps(names).encode()
            while data:
                data = data[os.write(write_fd, data) :]
        finally:
            os._exit(0)
    os.close(write_fd)
    return pid, read_fd


def learned_names(data: bytes) -> list[str]:
    try:
        names = json.loads(data or b"[]")
    except ValueError:
        return []
    return [n for n in names if n.split(".")[0] not in NEVER_PRELOAD]


def preload_learned(names: list[str]) -> list[str]:
    """Import what `learn` found, stopping before anything that starts a thread."""
    failed = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            __import__(name)
        except BaseException as exc:
            failed.append(f"{name}: {exc!r}"[:200])
        if _processes().threads() != 1:
            raise RuntimeError(f"importing {name} started a thread")
    return failed


# --- the grading workers ---------------------------------------------------------------


def start_worker_template(slots: list[str], owner: int, added_env: list[str]) -> int:
    """Fork the process that becomes the grading workers (``autograder.batch.worker``,
    one per ``FD:LOG`` slot, as the executor would start them) and return its pid.

    Called while the server warms up, once torch and matplotlib are imported and before
    anything of the kernels' own (IPython, ipykernel, the course's checks): the workers
    then inherit those imports instead of paying them again. Nothing of a kernel's set-up
    reaches them: the environment variables the server set for its kernels (`added_env`)
    are removed again and matplotlib draws with Agg, as in a worker started on its own.

    The workers do not depend on the server: they live until the executor (`owner`) ends,
    so a fork server that fails later costs the run only its fast kernels.
    """
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _become_worker_template(slots, owner, added_env)
        except BaseException:
            with contextlib.suppress(Exception):
                traceback.print_exc()
        finally:
            os._exit(code)
    close_slots(slots)
    return pid


def close_slots(slots: list[str]) -> None:
    """Close the server's copies of the workers' sockets (a worker nobody holds is seen
    as gone by the executor, which then starts one itself)."""
    for slot in slots:
        with contextlib.suppress(OSError, ValueError):
            os.close(int(slot.split(":", 1)[0]))


def _become_worker_template(slots: list[str], owner: int, added_env: list[str]) -> int:
    """Runs in the forked child: turn into the workers' parent; returns its exit code."""
    os.setsid()  # neither the server's process group nor its session
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the server's "ready" pipe and its log are not the workers'
        os.dup2(devnull, fd)
    os.close(devnull)
    for key in added_env:
        os.environ.pop(key, None)
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is not None:  # imported under the kernels' inline backend
        matplotlib.rcParams["backend"] = os.environ.get("MPLBACKEND") or "agg"
    sys.argv = ["-c"]
    # As the executor's WORKER_BOOT: jsonschema's optional IRI grammar stays out, and the
    # course package is this file's own, bare (its __init__ imports the checking library).
    sys.modules["rfc3987_syntax"] = None
    if "autograder" not in sys.modules:
        import types

        package = types.ModuleType("autograder")
        package.__path__ = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        sys.modules["autograder"] = package
    from autograder.batch import worker

    parsed = [(int(fd), log) for fd, log in (slot.split(":", 1) for slot in slots)]
    return worker.start_workers(parsed, owner=owner)


# --- the kernel child ------------------------------------------------------------------


def _launcher_args(argv: list[str]) -> list[str]:
    """The arguments after `-m ipykernel_launcher` (or `-m ipykernel`), else ValueError."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m" and argv[i + 1] in ("ipykernel_launcher", "ipykernel"):
            return list(argv[i + 2 :])
    raise ValueError(f"not an ipykernel command line: {argv!r}")


def _become_kernel(request: dict, base_path: list[str], log_fd: int, close_fds: list[int]) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        gc.enable()  # (the server runs without it: see main)
        os.setsid()  # own session and process group: killpg reaches all it starts
        _processes().die_with_parent()
        for fd in close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        audit = request.get("audit")
        audit_fd = _plain_module("audit").open_fifo(audit) if audit else None
        prepare_child(request)
        args = _launcher_args(request["argv"])
        if request.get("cwd"):
            os.chdir(request["cwd"])
        env = dict(request.get("env") or os.environ)
        env.setdefault("MPLBACKEND", KERNEL_ENV["MPLBACKEND"])
        os.environ.clear()
        os.environ.update(env)
        _follow_env()
        _one_draw_per_figure()
        _no_empty_flushes()
        _without_subshells()
        if audit:
            _plain_module("audit").install(
                dict(audit, own=audit.get("own") or os.getcwd()), audit_fd
            )
        import ipykernel_launcher

        sys.argv = [ipykernel_launcher.__file__, *args]
        sys.path[:] = base_path
        from ipykernel import kernelapp

        kernelapp.IPKernelApp.launch_instance(argv=args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            import atexit

            atexit._run_exitfuncs()
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def prepare_child(request: dict) -> None:
    """Limits applied in the child before the kernel starts (the place for sandboxing).

    Core dumps are always off (a killed kernel must not litter the student's folder);
    `rlimits` maps resource names (CPU, AS, NOFILE, ...) to [soft, hard]; `nice` lowers
    the kernel's scheduling priority; `sandbox` confines the kernel
    (:func:`autograder.batch.sandbox.apply_in_child`; it rewrites argv, cwd and env).
    """
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, (soft, hard) in (request.get("rlimits") or {}).items():
        resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (int(soft), int(hard)))
    if int(request.get("nice") or 0) > 0:
        os.nice(int(request["nice"]))
    if request.get("sandbox"):
        _plain_module("sandbox").apply_in_child(request)


_PLAIN: dict = {}


def _processes():
    """The process helpers (:mod:`autograder.batch.processes`), as a plain module."""
    return _plain_module("processes")


def _plain_module(name: str):
    """autograder/batch/<name>.py loaded as a plain file (autograder.batch and what it
    imports stay out of the server)."""
    if name not in _PLAIN:
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
        spec = importlib.util.spec_from_file_location(f"_autograder_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        _PLAIN[name] = module
    return _PLAIN[name]


def _follow_env() -> None:
    """Per-kernel state a fresh interpreter would draw anew, or read from its environment."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()  # the legacy global generator was seeded once, in the server
    # (Python's `random` reseeds itself after a fork.)
    import tempfile

    tempfile.tempdir = None  # chosen anew from this kernel's TMPDIR when first needed
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is not None:
        wanted = os.environ.get("MPLBACKEND")
        with contextlib.suppress(Exception):
            if wanted and matplotlib.rcParams._get("backend") != wanted:
                matplotlib.rcParams["backend"] = wanted
    threads = os.environ.get("OMP_NUM_THREADS")
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            torch.seed()  # torch draws its default seed at import: draw anew, as a fresh one
    if torch is not None and threads and threads.isdigit():
        with contextlib.suppress(Exception):
            torch.set_num_threads(int(threads))


def _one_draw_per_figure() -> None:
    """With the inline backend, draw each figure once.

    After every cell pyplot redraws each open figure (`_draw_all_if_interactive`, a
    post-execute callback), and then the inline backend renders and shows the same
    figures and closes them (`flush_figures`): the first drawing is never seen, and it
    was about a third of the time a graded notebook's figures took. pyplot registers the
    callback by its module-level name when the backend is chosen in the kernel, so the
    replacement here is what gets registered; with any other backend it draws as before.
    """
    pyplot = sys.modules.get("matplotlib.pyplot")
    original = getattr(pyplot, "_draw_all_if_interactive", None)
    if original is None or getattr(original, "_inline_aware", False):
        return
    matplotlib = sys.modules["matplotlib"]

    def _draw_all_if_interactive() -> None:
        if "inline" in str(matplotlib.rcParams._get("backend")):
            return  # flush_figures draws and shows them
        original()

    _draw_all_if_interactive._inline_aware = True
    pyplot._draw_all_if_interactive = _draw_all_if_interactive


def _no_empty_flushes() -> None:
    """Let a kernel's stdout and stderr flush return at once when nothing is buffered.

    ipykernel's ``OutStream.flush`` hands a flush to the IOPub thread and waits for it to
    be done, even with nothing to send, and the kernel flushes both streams after every
    cell (about a fifth of the kernel's own cost of a short cell). With nothing buffered
    that wait orders nothing: what earlier flushes handed over is already queued ahead of
    anything the kernel sends next. Anything buffered (or an echo stream) is flushed as
    before. Left alone if this ipykernel keeps its buffers differently.
    """
    try:
        from ipykernel.iostream import OutStream
    except ImportError:
        return
    original = OutStream.flush
    if getattr(original, "_skips_empty", False):
        return

    def flush(self):
        lock = getattr(self, "_buffer_lock", None)
        buffers = getattr(self, "_buffers", None)
        no_echo = hasattr(self, "echo") and self.echo is None
        if lock is not None and isinstance(buffers, dict) and no_echo:
            with lock:
                empty = not any(b.tell() for b in buffers.values())
            if empty:
                return None
        return original(self)

    flush._skips_empty = True
    OutStream.flush = flush


def _without_subshells() -> None:
    """Serve the shell channel from the kernel's main thread, as ipykernel does for a
    kernel without subshells.

    ipykernel 7 reads shell messages in a thread of their own, so that a client may open
    subshells (JupyterLab's, for running code beside a busy cell), and hands each one to
    the main thread over an in-process socket pair. Nothing that executes a notebook uses
    subshells, and the hop cost about a sixth of the kernel's own time per short cell.
    Code runs where it always did (the main thread); kernel_info no longer lists the
    "kernel subshells" feature. Left alone if this ipykernel builds its sockets otherwise.
    """
    from ipykernel import kernelapp

    app = kernelapp.IPKernelApp
    original = getattr(app, "init_sockets", None)
    if (
        original is None
        or "shell_channel_thread" not in app.class_trait_names()
        or getattr(original, "_no_subshells", False)
    ):
        return

    def init_sockets(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.shell_channel_thread = None

    init_sockets._no_subshells = True
    app.init_sockets = init_sockets


# --- the server loop -------------------------------------------------------------------


class _Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.done = False


class ForkServer:
    """Accepts spawn requests on a Unix socket and forks kernels; single-threaded."""

    def __init__(
        self,
        path: str,
        kernel_log: str | None = None,
        learn: list[str] | None = None,
        template: int | None = None,
    ):
        self.path = path
        self.kernel_log = kernel_log or os.devnull
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.listener.listen(64)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.conns: dict[int, _Conn] = {}
        self.orphans: dict[int, int] = {}  # pidfd -> pid of kernels whose client left
        self.base_path = list(sys.path)
        self.refusing: str | None = None  # why kernels can no longer be forked safely
        self.learner: tuple[int, int] | None = None
        self.learned = b""
        # The grading workers' parent (start_worker_template), reaped when it ends
        self.template: tuple[int, int] | None = None
        if template is not None:
            self.template = (template, os.pidfd_open(template))
            self.sel.register(self.template[1], selectors.EVENT_READ, "template")
        self.probe_dir: str | None = None
        if learn is not None:
            # Learn while already serving: kernels forked before it ends just import more.
            # (In a folder of its own, named after the server: removed when learning ends,
            # or by the next run if this one is killed.)
            import tempfile

            self.probe_dir = tempfile.mkdtemp(prefix=f"ag-probe-{os.getpid()}-")
            self.learner = start_learning(learn, self.probe_dir)
            self.sel.register(self.learner[1], selectors.EVENT_READ, "learn")

    # fds a child must not keep: the listener, every client socket, the selector, pidfds
    def _server_fds(self) -> list[int]:
        fds = [self.listener.fileno()]
        with contextlib.suppress(Exception):
            fds.append(self.sel.fileno())
        for c in self.conns.values():
            fds.append(c.sock.fileno())
            if c.pidfd is not None:
                fds.append(c.pidfd)
        fds.extend(self.orphans)
        if self.learner is not None:
            fds.append(self.learner[1])
        if self.template is not None:
            fds.append(self.template[1])
        return fds

    def serve_forever(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        signal.signal(signal.SIGINT, lambda *_: self._stop())
        while True:
            for key, _ in self.sel.select(timeout=1.0):
                kind = key.data
                if kind == "accept":
                    self._accept()
                elif kind == "learn":
                    self._learn()
                elif kind == "template":
                    self._reap_template()
                elif isinstance(kind, tuple) and kind[0] == "conn":
                    self._read(kind[1])
                elif isinstance(kind, tuple) and kind[0] == "pid":
                    self._reap(key.fd)

    def _stop(self) -> None:
        """Kill every kernel still running and leave at once (nothing else to save)."""
        self._shutdown()
        os._exit(0)

    def _learn(self) -> None:
        assert self.learner is not None
        pid, fd = self.learner
        chunk = os.read(fd, 1 << 16)
        if chunk:
            self.learned += chunk
            return
        self.sel.unregister(fd)
        os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self.learner = None
        self._remove_probe_dir()
        started = time.perf_counter()
        try:
            failed = preload_learned(learned_names(self.learned))
        except RuntimeError as exc:
            self.refusing = str(exc)
            print(f"forkserver: {exc}; no more kernels forked", file=sys.stderr, flush=True)
            return
        touch()
        print(
            f"forkserver: learned preloads in {time.perf_counter() - started:.2f} s"
            + (f"; {len(failed)} not importable, e.g. {failed[:3]}" if failed else ""),
            file=sys.stderr,
            flush=True,
        )

    def _reap_template(self) -> None:
        assert self.template is not None
        pid, fd = self.template
        self.sel.unregister(fd)
        os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self.template = None

    def _accept(self) -> None:
        sock, _ = self.listener.accept()
        conn = _Conn(sock)
        self.conns[sock.fileno()] = conn
        self.sel.register(sock, selectors.EVENT_READ, ("conn", sock.fileno()))

    def _read(self, fd: int) -> None:
        conn = self.conns[fd]
        try:
            data = conn.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._client_gone(conn)
            return
        conn.buf += data
        while b"\n" in conn.buf and conn.pid is None:
            line, conn.buf = conn.buf.split(b"\n", 1)
            self._spawn(conn, json.loads(line))

    def _send(self, conn: _Conn, msg: dict) -> None:
        with contextlib.suppress(OSError):
            conn.sock.sendall(json.dumps(msg).encode() + b"\n")

    def _spawn(self, conn: _Conn, request: dict) -> None:
        if self.refusing:
            self._send(conn, {"error": self.refusing})
            return
        try:
            _launcher_args(request.get("argv") or [])
        except ValueError as exc:
            self._send(conn, {"error": str(exc)})
            return
        log_fd = os.open(self.kernel_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # The server's objects go to the collector's permanent generation: a kernel's
        # collections then never write to their pages, which stay shared with the server
        # (copy-on-write faults were a large part of each kernel's system time).
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(log_fd)
            self._send(conn, {"error": f"fork failed: {exc}"})
            return
        if pid == 0:
            _become_kernel(request, self.base_path, log_fd, self._server_fds())
        os.close(log_fd)
        conn.pid = pid
        conn.pidfd = os.pidfd_open(pid)
        self.sel.register(conn.pidfd, selectors.EVENT_READ, ("pid", conn.pidfd))
        self._send(conn, {"pid": pid})

    def _reap(self, pidfd: int) -> None:
        if pidfd in self.orphans:
            pid = self.orphans.pop(pidfd)
            conn = None
        else:
            conn = next((c for c in self.conns.values() if c.pidfd == pidfd), None)
            pid = conn.pid if conn else None
        self.sel.unregister(pidfd)
        os.close(pidfd)
        status = None
        if pid is not None:
            with contextlib.suppress(ChildProcessError):
                _, raw = os.waitpid(pid, 0)
                status = os.waitstatus_to_exitcode(raw)
        if conn is not None:
            conn.pidfd = None
            conn.done = True
            self._send(conn, {"exit": pid, "status": status})

    def _client_gone(self, conn: _Conn) -> None:
        self.sel.unregister(conn.sock)
        del self.conns[conn.sock.fileno()]
        conn.sock.close()
        if conn.pid is not None and not conn.done:
            with contextlib.suppress(OSError):
                os.killpg(conn.pid, signal.SIGKILL)
            if conn.pidfd is not None:
                self.orphans[conn.pidfd] = conn.pid

    def _shutdown(self) -> None:
        pids = [c.pid for c in self.conns.values() if c.pid and not c.done]
        pids += list(self.orphans.values())
        if self.learner is not None:
            pids.append(self.learner[0])
        if self.template is not None:  # stopped with the run: the workers are done
            pids.append(self.template[0])
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._remove_probe_dir()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _remove_probe_dir(self) -> None:
        if self.probe_dir is not None:
            import shutil

            shutil.rmtree(self.probe_dir, ignore_errors=True)
            self.probe_dir = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("socket")
    parser.add_argument("--kernel-log", default=None)
    parser.add_argument(
        "--learn", nargs="*", default=None, help="instructor notebooks to learn preloads from"
    )
    parser.add_argument(
        "--workers", nargs="*", default=None, help="FD:LOG per grading worker to start"
    )
    parser.add_argument("--owner", type=int, default=None, help="the workers end with this pid")
    args = parser.parse_args(argv)
    processes = _processes()
    processes.die_with_parent()
    # As ipykernel_launcher does: neither the server's directory nor its own is a kernel's.
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and (sys.path[0] in ("", os.getcwd()) or os.path.abspath(sys.path[0]) == here):
        del sys.path[0]
    added_env = [key for key in KERNEL_ENV if key not in os.environ]
    for key, value in KERNEL_ENV.items():
        os.environ.setdefault(key, value)
    # torch's compiler keeps a cache folder, made when torch._dynamo is imported, in the
    # temporary directory: for this run (the workers too), in the run's folder instead.
    os.environ.setdefault(
        "TORCHINDUCTOR_CACHE_DIR",
        os.path.join(os.path.dirname(os.path.abspath(args.socket)), "torchinductor"),
    )
    started = time.perf_counter()
    # No collections in the server: what it imports lives as long as it does, and a
    # collection would only scatter freed holes over pages its kernels share.
    gc.disable()
    _plain_module("sandbox")  # loaded before any kernel hides the course directory
    _plain_module("audit")
    # What killed runs left in the temporary directory
    with contextlib.suppress(Exception):
        _plain_module("litter").sweep()
    cut = PRELOAD.index(WORKERS_FORK_BEFORE)
    failed = warm(PRELOAD[:cut])
    template = None
    if args.workers:
        if processes.threads() == 1:
            template = start_worker_template(args.workers, args.owner or os.getppid(), added_env)
        else:
            print(
                f"forkserver: {processes.threads()} threads; workers not started", file=sys.stderr
            )
            close_slots(args.workers)
    failed += warm(PRELOAD[cut:]) + warm(COURSE_PRELOAD)
    touch()
    if failed:
        print(f"forkserver: not preloaded: {failed}", file=sys.stderr)
    if processes.threads() != 1:  # forking a threaded process is unsafe: refuse rather than hang
        print(f"forkserver: {processes.threads()} threads after preload; refusing", file=sys.stderr)
        return 2
    server = ForkServer(args.socket, args.kernel_log, learn=args.learn, template=template)
    print(f"ready {time.perf_counter() - started:.2f}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
