"""A sandbox for grading kernels, built from what a plain Linux machine has without Docker.

Each kernel runs:

* as an unprivileged user of its own (``61000 + n``, one per grading worker, so
  concurrent kernels cannot signal or read each other), with no supplementary groups
  and ``no_new_privs``;
* in a private working directory (mode 0700, owned by that user) holding only copies of
  the submission's non-notebook files; HOME and TMPDIR point there; it is removed after
  the kernel ends;
* in a filesystem view that is an allowlist (:class:`View`, built by bubblewrap): its
  private directory and a private /tmp, read-write; /usr, a few files of /etc, the
  Python installation, the virtual environment and the course package's folder,
  read-only; nothing else of the host (no home directory, no host /tmp, no course or
  checkout directory). Without bubblewrap, a mount namespace of the kernel's own where
  the course directory is covered by an empty read-only tmpfs (a denylist);
* in a network namespace of its own, with no interface up (not even loopback). The
  grader reaches the kernel over Unix sockets (ZMQ ``ipc`` transport) in its directory;
* under limits: memory (cgroup v1 ``memory.limit_in_bytes``, else ``RLIMIT_AS`` above
  the forked child's starting size), processes (cgroup ``pids.max`` and
  ``RLIMIT_NPROC``), CPU time (``RLIMIT_CPU``: SIGXCPU), file size (``RLIMIT_FSIZE``:
  EFBIG) and core dumps (none). Output volume is capped by the grader
  (:class:`autograder.judge.preprocessor.TrustedExecute`).

After each kernel, every process still owned by its user is killed (a fork that called
``setsid`` escapes the kernel's process group, not its uid), and which limits were hit
is read back, with what was measured (:attr:`Jail.evidence`), so that the outcome can
name them.

Where a primitive is missing (not root, no namespaces, no cgroups), grading still works
without it, and :func:`available` lists what is missing; the worker logs it loudly.

This module is also loaded by the fork server as a plain file (it must not import the
course package there): :func:`apply_in_child` uses only the standard library.

Defaults are :class:`Limits`; each can be changed through the environment of the grading
run: ``AUTOGRADER_SANDBOX=0`` turns the sandbox off, ``AUTOGRADER_SANDBOX_MEMORY``
(bytes, or with a K/M/G suffix), ``AUTOGRADER_SANDBOX_PIDS``, ``AUTOGRADER_SANDBOX_CPU``
(seconds per kernel), ``AUTOGRADER_SANDBOX_FSIZE`` and ``AUTOGRADER_SANDBOX_NETWORK=1``
(keep the network).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

UID_BASE = 61000
UID_COUNT = 1000
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_NAME = "autograder"
LOCK_DIR = "/run/autograder-sandbox" if os.path.isdir("/run") else "/tmp/autograder-sandbox"
ENV = "AUTOGRADER_SANDBOX"
SOCKET_PATH_MAX = 107  # bytes in a Unix socket's path (sun_path, less its final NUL)
BWRAP = os.environ.get("AUTOGRADER_BWRAP") or "/usr/bin/bwrap"
# Folders of the kernel's filesystem view besides Python's, the course package and its own
# directory (read-only; what does not exist here is skipped). /bin, /lib... are symlinks
# into /usr on a merged-/usr system and copied as such.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/alternatives",
    "/etc/fonts",
    "/etc/mime.types",
    "/etc/os-release",
    "/sys/devices/system/cpu",
)


@dataclass(frozen=True)
class Limits:
    """Per-kernel limits (see the module doc for how to change them)."""

    enabled: bool = True
    memory_bytes: int = 2 << 30
    pids: int = 64
    cpu_seconds: int = 1800
    file_bytes: int = 64 << 20
    no_network: bool = True

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Limits:
        env = os.environ if environ is None else environ
        values = dict(overrides)
        if env.get(ENV, "").strip().lower() in ("0", "no", "off", "false"):
            values["enabled"] = False
        for name, key in (
            ("memory_bytes", "MEMORY"),
            ("pids", "PIDS"),
            ("cpu_seconds", "CPU"),
            ("file_bytes", "FSIZE"),
        ):
            raw = env.get(f"{ENV}_{key}")
            if raw:
                values[name] = _size(raw)
        if env.get(f"{ENV}_NETWORK", "").strip().lower() in ("1", "yes", "on", "true"):
            values["no_network"] = False
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):g} MiB"


# --- what this machine offers ----------------------------------------------------------


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _try_in_child(flags: int) -> bool:
    """Whether unshare(flags) succeeds, tried in a throwaway child."""
    pid = os.fork()
    if pid == 0:
        code = 1
        with contextlib.suppress(BaseException):
            code = 0 if _libc().unshare(flags) == 0 else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _cgroup_dir(controller: str) -> str | None:
    path = os.path.join(CGROUP_ROOT, controller)
    probe = "memory.limit_in_bytes" if controller == "memory" else "pids.max"
    if os.path.isdir(path) and os.access(path, os.W_OK):
        # the controller's root has no limit file; a child group does: try one
        test = os.path.join(path, CGROUP_NAME)
        with contextlib.suppress(OSError):
            os.makedirs(test, exist_ok=True)
            if os.path.exists(os.path.join(test, probe)):
                return test
    return None


@dataclass(frozen=True)
class Available:
    root: bool
    netns: bool
    mountns: bool
    memory_cgroup: bool
    pids_cgroup: bool
    bwrap: bool = True

    def missing(self, limits: Limits) -> list[str]:
        """The protections this run will not have, in words."""
        if not limits.enabled:
            return [
                "the kernel sandbox is turned off (AUTOGRADER_SANDBOX=0): kernels run "
                "as the grader's user with its file and network access"
            ]
        out = []
        if not self.root:
            out.append(
                "not root: kernels run as the grader's own user (they can read and write "
                "the gradebook and every submission) and in the course directory"
            )
        if limits.no_network and not self.netns:
            out.append("no network namespaces: kernels have network access")
        if self.root and not self.mountns:
            out.append(
                "no mount namespaces: the course directory is hidden only by file "
                "permissions (world-readable files stay readable)"
            )
        elif self.root and not self.bwrap:
            out.append(
                f"bubblewrap ({BWRAP}) not installed (`make system-packages`): kernels see "
                "the host's files (home directories, /tmp, the checkout); only the course "
                "directory is hidden"
            )
        if not self.memory_cgroup:
            out.append(
                f"no memory cgroup: memory is limited by address space only "
                f"({_gib(limits.memory_bytes)} above the kernel's start)"
            )
        if not self.pids_cgroup:
            out.append("no pids cgroup: processes are limited by RLIMIT_NPROC only")
        return out


def _bwrap_works() -> bool:
    """Whether bubblewrap is installed and builds a mount namespace here."""
    if not os.access(BWRAP, os.X_OK):
        return False
    import subprocess

    try:
        done = subprocess.run(
            [BWRAP, "--ro-bind", "/usr", "/usr", *_system_links(), "--", "/usr/bin/true"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _system_links() -> list[str]:
    """bwrap arguments recreating /bin, /lib... as they are here (symlinks into /usr, or
    read-only folders)."""
    args: list[str] = []
    for path in SYSTEM_DIRS[1:]:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


READY = "echo ready && exec sleep infinity"


class View:
    """A kernel's filesystem view, built by bubblewrap: an allowlist.

    bwrap builds a fresh mount namespace whose root holds only: /usr (and /bin, /lib...
    as on this machine), a few files of /etc (the loader's cache, time zone, fonts),
    the CPU description in /sys, a fresh /proc and /dev, a private empty /tmp, read-only
    each of `expose` (the Python installation, the virtual environment, the course
    package's own folder), and read-write `workdir`, at the same path as on the host.
    Nothing else of the host exists there: no home directory, no host /tmp, no course,
    checkout or other kernel's directory.

    Kernels are forked from a warm interpreter, so bwrap cannot start them: it starts a
    placeholder (``sh``, then ``sleep``) in the namespace it built, and the forked kernel enters that
    namespace (``setns``, :func:`apply_in_child`), checked by the namespace's inode.
    The placeholder is killed with the view; the namespace lives on while a kernel is in
    it.
    """

    def __init__(self, workdir: str, expose: list[str]):
        import subprocess

        self.workdir = workdir
        argv = [BWRAP, "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
        argv += _system_links()
        for path in ETC_FILES:
            argv += ["--ro-bind-try", path, path]
        argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        made = {"/", "/tmp"}
        for path, how in [*((p, "--ro-bind") for p in expose), (workdir, "--bind")]:
            if _under(path, "/usr"):
                continue
            # bwrap would make the folders on the way private to root: the kernel's user
            # must pass through them
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                top = "/" + "/".join(parts[:i])
                if top not in made:
                    made.add(top)
                    argv += ["--perms", "0755", "--dir", top]
            argv += [how, path, path]
        read_fd, write_fd = os.pipe()
        # The placeholder says "ready" once it runs, which is after bwrap has finished
        # building the view (the namespace exists earlier, half built).
        argv += ["--info-fd", str(write_fd), "--", "/bin/sh", "-c", READY]
        try:
            self.proc = subprocess.Popen(
                argv,
                pass_fds=[write_fd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        finally:
            os.close(write_fd)
        with os.fdopen(read_fd, "rb") as fh:
            info = fh.read()  # written and closed by bwrap
        ready = self.proc.stdout.readline()
        try:
            data = json.loads(info)
            self.pid, self.ino = int(data["child-pid"]), int(data["mnt-namespace"])
            if ready.strip() != b"ready":
                raise ValueError(ready)
        except (ValueError, KeyError, TypeError):
            self.proc.kill()
            err = self.proc.communicate()[1].decode(errors="replace").strip()
            raise RuntimeError(f"bubblewrap could not build the kernel's view: {err}") from None

    def request(self) -> dict:
        return {"pid": self.pid, "ino": self.ino}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.communicate(timeout=5)


_AVAILABLE: Available | None = None


def available() -> Available:
    """Which primitives work here (tested once per process)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        root = os.geteuid() == 0
        _AVAILABLE = Available(
            root=root,
            netns=root and _try_in_child(CLONE_NEWNET),
            mountns=root and _try_in_child(CLONE_NEWNS),
            memory_cgroup=root and _cgroup_dir("memory") is not None,
            pids_cgroup=root and _cgroup_dir("pids") is not None,
            bwrap=root and _bwrap_works(),
        )
    return _AVAILABLE


# --- the worker side -------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def _write(path: str, value) -> None:
    with open(path, "w") as fh:
        fh.write(str(value))


def _counter(text: str, key: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


class Jail:
    """One grading worker's sandbox: its uid, cgroups, and one directory per kernel."""

    def __init__(self, limits: Limits, course_dir: str, expose: list[str] | None = None):
        self.limits = limits
        self.course_dir = os.path.realpath(course_dir)
        self.avail = available()
        self.missing = self.avail.missing(limits)
        self.active = limits.enabled and self.avail.root
        self.uid = self.gid = None
        self._lock = None
        self.cgroups: dict[str, str] = {}
        self.workdir: str | None = None
        self.request: dict | None = None
        self._before: dict[str, int] = {}
        self.view: View | None = None
        self.evidence = ""
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package
        self.expose = sorted(
            {os.path.realpath(p) for p in (expose or [here, sys.prefix, sys.base_prefix])}
        )
        # Folders the kernel's user could not pass through on the way to what it must read
        # (Python itself under root's home, say): covered too, with those paths mounted back.
        self.blocked = sorted({b for p in self.expose for b in _blocked_ancestors(p)})
        # With bubblewrap the kernel's view is an allowlist (View); without it, the course
        # directory is covered in the kernel's own mount namespace (a denylist).
        self.allowlist = self.active and self.avail.mountns and self.avail.bwrap
        if self.blocked and self.active and not self.avail.mountns:
            self.missing.append(
                "kernels keep the grader's user: without mount namespaces they could not "
                f"reach Python under {', '.join(self.blocked)}"
            )
        if self.active:
            self._allocate_uid()
            self._sweep()
            self._make_cgroups()

    def _allocate_uid(self) -> None:
        import fcntl

        os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
        start = os.getpid() % UID_COUNT
        for i in range(UID_COUNT):
            uid = UID_BASE + (start + i) % UID_COUNT
            fd = os.open(os.path.join(LOCK_DIR, f"{uid}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            os.set_inheritable(fd, False)
            self._lock, self.uid, self.gid = fd, uid, uid
            return
        raise RuntimeError("no free sandbox uid")

    @staticmethod
    def base_dir() -> str:
        """Where the kernels' private folders are made: in the temporary directory, or
        in /tmp where that path is too long for the kernel's Unix sockets (at most 107
        bytes; the longest is ``<base>/<uid>-<8 letters>/.autograder-<8>/channel``, 44
        bytes more)."""
        base = os.path.join(tempfile.gettempdir(), "autograder-kernels")
        if len(base.encode()) > SOCKET_PATH_MAX - 44:
            base = "/tmp/autograder-kernels"
        return base

    def _sweep(self) -> None:
        """Remove kernel folders a killed run left: those of a uid nobody holds."""
        import fcntl

        base = self.base_dir()
        with contextlib.suppress(OSError):
            for name in os.listdir(base):
                uid = name.split("-", 1)[0]
                if not uid.isdigit() or int(uid) == self.uid:
                    continue
                lock = os.path.join(LOCK_DIR, f"{uid}.lock")
                try:
                    fd = os.open(lock, os.O_RDWR)
                except OSError:
                    fd = None  # never locked here: nobody holds it
                try:
                    if fd is not None:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: stale
                except OSError:
                    continue  # a live jail's
                finally:
                    if fd is not None:
                        os.close(fd)
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)

    def _make_cgroups(self) -> None:
        for controller in ("memory", "pids"):
            base = _cgroup_dir(controller)
            if base is None:
                continue
            path = os.path.join(base, str(self.uid))
            try:
                os.makedirs(path, exist_ok=True)
                if controller == "memory":
                    _write(os.path.join(path, "memory.limit_in_bytes"), self.limits.memory_bytes)
                    with contextlib.suppress(OSError):  # no swap accounting: fine
                        _write(
                            os.path.join(path, "memory.memsw.limit_in_bytes"),
                            self.limits.memory_bytes,
                        )
                else:
                    _write(os.path.join(path, "pids.max"), self.limits.pids)
            except OSError as exc:
                self.missing.append(f"{controller} cgroup not usable: {exc}")
                continue
            self.cgroups[controller] = path

    def _counters(self) -> dict[str, int]:
        out = {}
        if "memory" in self.cgroups:
            oom = _read(os.path.join(self.cgroups["memory"], "memory.oom_control"))
            out["oom_kill"] = _counter(oom, "oom_kill")
            out["mem_failcnt"] = int(
                _read(os.path.join(self.cgroups["memory"], "memory.failcnt")) or 0
            )
            out["mem_peak"] = int(
                _read(os.path.join(self.cgroups["memory"], "memory.max_usage_in_bytes")) or 0
            )
        if "pids" in self.cgroups:
            out["pids_max"] = _counter(
                _read(os.path.join(self.cgroups["pids"], "pids.events")), "max"
            )
        return out

    def start(self, submission_dir: str) -> dict | None:
        """Prepare a kernel's directory from the submission; the fork request's
        ``sandbox`` field (None when the sandbox is off)."""
        self.kill_all()
        self._close_view()
        self.request = None
        if not self.active:
            return None
        base = self.base_dir()
        for attempt in range(3):  # (another worker that ends removes the folder if empty)
            os.makedirs(base, mode=0o711, exist_ok=True)
            os.chmod(base, 0o711)
            try:
                self.workdir = tempfile.mkdtemp(prefix=f"{self.uid}-", dir=base)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        if os.path.isdir(submission_dir):
            for root, dirs, files in os.walk(submission_dir):
                rel = os.path.relpath(root, submission_dir)
                dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints"]
                dest = os.path.normpath(os.path.join(self.workdir, rel))
                os.makedirs(dest, exist_ok=True)
                for name in files:
                    if not name.endswith(".ipynb"):
                        with contextlib.suppress(OSError):
                            shutil.copy(os.path.join(root, name), os.path.join(dest, name))
        for root, dirs, files in os.walk(self.workdir):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)
        os.chown(self.workdir, self.uid, self.gid)
        os.chmod(self.workdir, 0o700)
        if "memory" in self.cgroups:  # the peak is this kernel's
            with contextlib.suppress(OSError):
                _write(os.path.join(self.cgroups["memory"], "memory.max_usage_in_bytes"), 0)
        self._before = self._counters()
        view = None
        if self.allowlist:
            try:
                self.view = View(self.workdir, self.expose)
                view = self.view.request()
            except (OSError, RuntimeError) as exc:  # the course directory is hidden still
                import logging

                logging.getLogger("autograder.batch").warning(
                    "KERNEL SANDBOX INCOMPLETE: no allowlist for this kernel: %s", exc
                )
        hide = [self.course_dir, *self.blocked] if self.avail.mountns and not view else []
        drop = self.avail.mountns or not self.blocked
        self.request = {
            "view": view,
            "uid": self.uid if drop else None,
            "gid": self.gid if drop else None,
            "workdir": self.workdir,
            "hide": hide,
            "expose": [p for p in self.expose if any(_under(p, h) for h in hide)],
            "cgroups": [os.path.join(p, "cgroup.procs") for p in self.cgroups.values()],
            "netns": self.limits.no_network and self.avail.netns,
            "memory_rlimit": 0 if "memory" in self.cgroups else self.limits.memory_bytes,
            "rlimits": {
                "NPROC": [self._nproc(), self._nproc()],
                "FSIZE": [self.limits.file_bytes, self.limits.file_bytes],
                "CPU": [self.limits.cpu_seconds, self.limits.cpu_seconds + 5],
            },
        }
        return self.request

    def finish(self, exit_status: int | None = None) -> list[str]:
        """Kill what the kernel left, remove its directory; the limits it hit, in words.

        What was measured is left in :attr:`evidence` (one line: the memory cgroup's OOM
        kills and peak, processes refused, the limits set), for a reason that must say
        why no limit explains how the kernel ended."""
        if not self.active:
            return []
        self.kill_all()
        big = self._big_file()  # (its private /tmp goes with the view)
        self._close_view()
        notes = []
        after = self._counters()
        grew = {k: after.get(k, 0) - self._before.get(k, 0) for k in after}
        mem = _gib(self.limits.memory_bytes)
        if (
            grew.get("oom_kill", 0) > 0
            or exit_status == -signal.SIGKILL
            and grew.get("mem_failcnt")
        ):
            notes.append(f"memory limit reached: used more than {mem} (killed)")
        elif grew.get("mem_failcnt", 0) > 0 and exit_status is not None:
            notes.append(f"memory limit of {mem} reached")
        if grew.get("pids_max", 0) > 0:
            notes.append(
                f"process limit reached: {grew['pids_max']} new processes or threads refused "
                f"(at most {self.limits.pids})"
            )
        if exit_status == -signal.SIGXCPU:
            notes.append(
                f"CPU time limit reached: more than {self.limits.cpu_seconds} s of CPU "
                "(killed by SIGXCPU)"
            )
        if exit_status == -signal.SIGXFSZ or big:
            notes.append(
                f"file size limit reached: a file of {_gib(self.limits.file_bytes)}"
                + (f" ({big})" if big else "")
            )
        self.evidence = self._evidence(grew, after)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self.request = None
        return notes

    def _evidence(self, grew: dict[str, int], after: dict[str, int]) -> str:
        parts = []
        if "memory" in self.cgroups:
            parts.append(
                f"memory cgroup: {grew.get('oom_kill', 0)} OOM kills, peak "
                f"{_gib(after.get('mem_peak', 0))} of {_gib(self.limits.memory_bytes)}"
            )
        else:
            parts.append(f"address space limited to {_gib(self.limits.memory_bytes)} more")
        if "pids" in self.cgroups:
            parts.append(f"pids cgroup: {grew.get('pids_max', 0)} refused")
        parts.append(
            f"rlimits: CPU {self.limits.cpu_seconds} s, file size "
            f"{_gib(self.limits.file_bytes)}, processes {self._nproc()}"
        )
        return "; ".join(parts)

    def _nproc(self) -> int:
        # With a pids cgroup, the cgroup's limit is the one reached (and counted): the
        # uid's process limit, which nothing records, is set a little above it.
        return self.limits.pids + (16 if "pids" in self.cgroups else 0)

    def _big_file(self) -> str:
        """A file the kernel left at the size limit, in its directory or private /tmp."""
        tops = [self.workdir] if self.workdir else []
        if self.view is not None:
            tops.append(f"/proc/{self.view.pid}/root/tmp")
        for top in tops:
            try:
                device = os.stat(top).st_dev
            except OSError:
                continue
            for root, dirs, files in os.walk(top):
                # Only what the kernel could write: not what is mounted inside (the view's
                # read-only binds of the venv or the package may lie under /tmp).
                dirs[:] = [d for d in dirs if _same_device(os.path.join(root, d), device)]
                for name in files:
                    path = os.path.join(root, name)
                    with contextlib.suppress(OSError):
                        if os.lstat(path).st_size >= self.limits.file_bytes:
                            rel = os.path.relpath(path, top)
                            return rel if top == self.workdir else f"/tmp/{rel}"
        return ""

    def kill_all(self) -> int:
        """SIGKILL every process of this jail's uid (or in its cgroups); how many."""
        if self.uid is None:
            return 0
        import psutil

        killed = 0
        for _ in range(20):
            pids = set()
            for proc in psutil.process_iter(["uids"]):
                uids = proc.info.get("uids")
                if uids and self.uid in (uids.real, uids.effective, uids.saved):
                    pids.add(proc.pid)
            for path in self.cgroups.values():
                for line in _read(os.path.join(path, "cgroup.procs")).split():
                    pids.add(int(line))
            pids.discard(os.getpid())
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(0.02)
        return killed

    @property
    def offline(self) -> bool:
        """Whether this jail's kernels run without a network."""
        return self.active and self.limits.no_network and self.avail.netns

    def _close_view(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None

    def close(self) -> None:
        self.kill_all()
        self._close_view()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        with contextlib.suppress(OSError):  # the last jail out removes it
            os.rmdir(self.base_dir())
        for path in self.cgroups.values():
            with contextlib.suppress(OSError):
                os.rmdir(path)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _blocked_ancestors(path: str) -> list[str]:
    """Ancestors of `path` that other users may not traverse (no o+x)."""
    out = []
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        top = "/" + "/".join(parts[:i])
        with contextlib.suppress(OSError):
            if not os.stat(top).st_mode & 0o001:
                out.append(top)
                break
    return out


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def ipc_prefix(request: dict) -> str:
    """Where the kernel's ZMQ Unix sockets live (the kernel creates them when it binds)."""
    return os.path.join(request["workdir"], ".k")


# --- the child side (runs in the forked kernel, as root, before it becomes the kernel) --


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc, source, target, fstype, flags, data=None) -> None:
    def enc(s):
        return None if s is None else s.encode()

    _check(
        libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def _copy_connection_file(request: dict, workdir: str, uid: int, gid: int) -> list[str]:
    """The kernel's argv, its connection file (in the grader's runtime directory, which
    the kernel cannot see) copied into its own directory first."""
    argv = list(request["argv"])
    if "-f" in argv[:-1]:
        i = argv.index("-f") + 1
        with open(argv[i], "rb") as fh:
            data = fh.read()
        conn = os.path.join(workdir, ".kernel.json")
        fd = os.open(conn, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, data)
        os.close(fd)
        os.chown(conn, uid, gid)
        argv[i] = conn
    return argv


def enter_view(view: dict, libc=None) -> None:
    """Enter the mount namespace bubblewrap built (:class:`View`, its :meth:`View.request`):
    this process's root becomes that namespace's, where only the allowlist exists."""
    libc = libc or _libc()
    fd = os.open(f"/proc/{int(view['pid'])}/ns/mnt", os.O_RDONLY)
    try:
        if os.fstat(fd).st_ino != int(view["ino"]):
            raise OSError("the kernel's view is gone (its placeholder process ended)")
        _check(libc.setns(fd, CLONE_NEWNS), "setns")
    finally:
        os.close(fd)


def apply_in_child(request: dict) -> None:
    """Confine this process (a forked kernel, still root) as `request["sandbox"]` says.

    Rewrites the request's argv (the connection file is copied into the kernel's
    directory, which the kernel's user can read), cwd and env. Raises on any failure:
    a kernel that cannot be confined must not run.
    """
    import resource

    box = request["sandbox"]
    libc = _libc()
    workdir = box["workdir"]
    uid = os.getuid() if box.get("uid") is None else int(box["uid"])
    gid = os.getgid() if box.get("gid") is None else int(box["gid"])
    for procs in box.get("cgroups") or []:
        _write(procs, os.getpid())
    argv = _copy_connection_file(request, workdir, uid, gid)
    if box.get("view"):
        enter_view(box["view"], libc)
    flags = (CLONE_NEWNET if box.get("netns") else 0) | (CLONE_NEWNS if box.get("hide") else 0)
    if flags:
        _check(libc.unshare(flags), "unshare")
    if box.get("hide"):
        _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
        keep = []
        for path in box.get("expose") or []:
            if os.path.exists(path):
                keep.append((path, os.open(path, os.O_PATH)))
        for top in box["hide"]:
            _mount(libc, "none", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
            for path, fd in keep:
                if _under(path, top):
                    os.makedirs(path, exist_ok=True)
                    _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
                    _mount(libc, None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
            _mount(libc, None, top, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        for _, fd in keep:
            os.close(fd)
    request["argv"] = argv
    env = dict(request.get("env") or os.environ)
    env.update(
        HOME=workdir,
        TMPDIR=workdir,
        TORCHINDUCTOR_CACHE_DIR=os.path.join(workdir, ".torchinductor"),
        JUPYTER_RUNTIME_DIR=workdir,
        IPYTHONDIR=os.path.join(workdir, ".ipython"),
        MPLCONFIGDIR=os.path.join(workdir, ".matplotlib"),
        USER="sandbox",
        LOGNAME="sandbox",
    )
    request["env"] = env
    request["cwd"] = workdir
    for name, (soft, hard) in (box.get("rlimits") or {}).items():
        resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (int(soft), int(hard)))
    if box.get("memory_rlimit"):
        size = 0
        for line in _read("/proc/self/status").splitlines():
            if line.startswith("VmSize:"):
                size = int(line.split()[1]) * 1024
        limit = size + int(box["memory_rlimit"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.chdir(workdir)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # cleared by setuid: set again
    if os.getppid() == 1:  # the server died meanwhile
        os._exit(1)


def describe(request: dict | None) -> str:
    return json.dumps({k: v for k, v in (request or {}).items() if k != "rlimits"})


__all__ = ["Limits", "Jail", "available", "apply_in_child", "asdict"]


def _same_device(path: str, device: int) -> bool:
    try:
        return os.lstat(path).st_dev == device
    except OSError:
        return False
