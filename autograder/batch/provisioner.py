"""A jupyter_client kernel provisioner whose kernels are forked by the fork server.

The kernel manager (nbclient, inside nbgrader's Execute preprocessor) still writes the
connection file, picks the ports, talks to the kernel and shuts it down; only the launch
differs: instead of exec'ing ``python -m ipykernel_launcher``, the provisioner asks the
fork server (:mod:`autograder.batch.forkserver`) for a child that runs that same command
line in an already-warm interpreter. The manager tracks the forked pid itself (poll, wait,
signals), so a kernel that dies, or is killed on a timeout, is seen like any other.

Selected by a kernelspec whose ``metadata.kernel_provisioner.provisioner_name`` is
``autograder-fork`` (entry point in the ``jupyter_client.kernel_provisioners`` group); see
:func:`write_kernelspec`. How the child is prepared (limits today, a sandbox later) is
decided in :func:`autograder.batch.forkserver.prepare_child` from the request's fields.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner
from traitlets import Bool, Dict, Integer, Unicode

from . import sandbox as _sandbox

PROVISIONER_NAME = "autograder-fork"
KERNEL_NAME = "autograder-python3"
SOCKET_ENV = "AUTOGRADER_FORKSERVER"


class ForkUnavailable(RuntimeError):
    """The fork server cannot start this kernel (absent, refused, or not an ipykernel)."""


class ForkedKernel:
    """A forked kernel as a `subprocess.Popen`-like object, which LocalProvisioner manages.

    The kernel is the fork server's child, so its exit status arrives over the socket;
    signals go straight to the pid (through a pidfd, immune to pid reuse).
    """

    stdin = stdout = stderr = None

    def __init__(self, sock: socket.socket, pid: int):
        self.sock = sock
        self.pid = pid
        self.returncode: int | None = None
        self._buf = b""
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (OSError, AttributeError):
            self._pidfd = None

    def _read(self, timeout: float | None) -> None:
        """Read the exit message if it arrives within `timeout` seconds (None: wait)."""
        if self.returncode is not None:
            return
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except (TimeoutError, BlockingIOError):
            return
        except OSError:
            data = b""
        if not data:  # the server is gone; its children die with it (PDEATHSIG)
            self.returncode = -signal.SIGKILL
            return
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            msg = json.loads(line)
            if "exit" in msg:
                status = msg.get("status")
                self.returncode = -signal.SIGKILL if status is None else int(status)

    def poll(self) -> int | None:
        self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(["forked kernel"], timeout)
            self._read(left)
        self.close()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        if self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)
        else:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def settle(self, timeout: float) -> int | None:
        """Wait up to `timeout` seconds for the exit report; the returncode or None."""
        deadline = time.monotonic() + timeout
        while self.returncode is None and time.monotonic() < deadline:
            self._read(max(0.0, deadline - time.monotonic()))
        return self.returncode

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def close(self) -> None:
        """Drop the connection (the server kills the kernel if it still runs)."""
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

    def __del__(self):  # pragma: no cover - best effort
        self.close()


def spawn(
    socket_path: str,
    argv: list[str],
    *,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    rlimits: dict[str, list[int]] | None = None,
    nice: int = 0,
    sandbox: dict | None = None,
    audit: dict | None = None,
    timeout: float = 60.0,
) -> ForkedKernel:
    """Ask the fork server at `socket_path` for a kernel running `argv`."""
    if not socket_path:
        raise ForkUnavailable("no fork server configured")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        request = {
            "argv": list(argv),
            "cwd": cwd,
            "env": env,
            "rlimits": rlimits or {},
            "nice": nice,
            "sandbox": sandbox,
            "audit": audit,
        }
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ForkUnavailable("fork server closed the connection")
            buf += chunk
    except OSError as exc:
        sock.close()
        raise ForkUnavailable(f"fork server at {socket_path}: {exc}") from exc
    line, rest = buf.split(b"\n", 1)
    reply = json.loads(line)
    if "pid" not in reply:
        sock.close()
        raise ForkUnavailable(reply.get("error", "fork server refused"))
    proc = ForkedKernel(sock, int(reply["pid"]))
    proc._buf = rest
    return proc


class ForkProvisioner(LocalProvisioner):
    """LocalProvisioner, except that the kernel is forked from a warm interpreter."""

    socket_path = Unicode("", config=True, help=f"Fork server socket (default: ${SOCKET_ENV}).")
    rlimits = Dict(config=True, help="Resource limits for the kernel: {name: [soft, hard]}.")
    nice = Integer(0, config=True, help="How much to lower the kernel's scheduling priority.")
    fallback = Bool(
        True, config=True, help="Start an ordinary kernel when the fork server is unavailable."
    )

    async def kill(self, restart: bool = False) -> None:
        await super().kill(restart)
        if isinstance(self.process, ForkedKernel):
            # A killed kernel's exit is reported within milliseconds: waiting for it here
            # spares the kernel manager its 0.1 s polling sleeps.
            self.process.settle(1.0)

    def _submission(self):
        """The submission's context, which the kernel manager carries (None: none;
        see :class:`autograder.batch.execution.SubmissionContext`)."""
        return getattr(self.parent, "submission", None)

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        submission = self._submission()
        box = submission.sandbox if submission is not None else None
        path = self.socket_path or os.environ.get(SOCKET_ENV, "")
        if path and self.parent is not None and not self.parent.connection_file:
            # Beside the fork server's socket (the run's own folder), not a temporary file
            # of jupyter_client's, which also sets the sticky bit on the folder it is in.
            self.parent.connection_file = os.path.join(
                os.path.dirname(path), f"kernel-{self.kernel_id}.json"
            )
        if box and self.parent is not None:
            # A sandboxed kernel has no network: talk to it over Unix sockets in its folder.
            self.parent.transport = "ipc"
            self.parent.ip = _sandbox.ipc_prefix(box)
            self.parent.cache_ports = False
        return await super().pre_launch(**kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        path = self.socket_path or os.environ.get(SOCKET_ENV, "")
        cwd = kwargs.get("cwd")
        submission = self._submission()
        box = submission.sandbox if submission is not None else None
        try:
            proc = spawn(
                path,
                cmd,
                cwd=str(cwd) if cwd else None,
                env=kwargs.get("env"),
                rlimits=self.rlimits,
                nice=self.nice,
                sandbox=box,
                audit=submission.audit if submission is not None else None,
            )
        except ForkUnavailable as exc:
            if not self.fallback:
                raise
            self.log.warning("starting an ordinary kernel: %s", exc)
            if box:
                self.log.warning("this kernel is NOT sandboxed")
            return await super().launch_kernel(cmd, **kwargs)
        self.process = proc
        self.pid = proc.pid
        self.pgid = proc.pid  # the child made itself a session and group leader
        self.cwd = cwd or Path.cwd()
        return self.connection_info


def register_entry_point() -> None:
    """Make the provisioner known even when the installed metadata predates it."""
    from importlib.metadata import EntryPoint

    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    factory = KernelProvisionerFactory.instance()
    if PROVISIONER_NAME not in factory.provisioners:
        factory.provisioners[PROVISIONER_NAME] = EntryPoint(
            name=PROVISIONER_NAME,
            value=f"{__name__}:ForkProvisioner",
            group=KernelProvisionerFactory.GROUP_NAME,
        )


def write_kernelspec(
    data_dir: Path, socket_path: str, *, rlimits: dict | None = None, nice: int = 0
) -> Path:
    """Write `kernels/<KERNEL_NAME>/kernel.json` under `data_dir` (put it on JUPYTER_PATH)."""
    spec_dir = Path(data_dir) / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (forked from a warm interpreter)",
        "language": "python",
        "metadata": {
            "debugger": True,
            "kernel_provisioner": {
                "provisioner_name": PROVISIONER_NAME,
                "config": {"socket_path": socket_path, "rlimits": rlimits or {}, "nice": nice},
            },
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir
