"""What a grading run leaves in the temporary directory, and clearing what a killed run left.

A run makes, in the temporary directory: the executor's run folder (``ag-*``, holding
the fork server's socket), the fork server's probe folder (``ag-probe-<pid>-*``), each
worker's audit folder (``autograder-audit-<pid>-*``), the kernels' private folders
(``autograder-kernels/<uid>-*``) and, without a sandbox, the judge's channel folders
(``.autograder-*``). A run that ends removes its own. A run that is killed cannot, so
every run, as its fork server starts, removes those whose owner is gone: a folder named
after a process that no longer exists, a folder whose socket nobody listens on any more,
a kernel folder whose sandbox uid nobody holds. Nothing else is touched, and neither is
the temporary directory itself (its mode included).

Standard library only: the fork server loads this file as a plain file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import stat
import tempfile
import time

PROBE_PREFIX = "ag-probe-"
AUDIT_PREFIX = "autograder-audit-"
KERNELS = "autograder-kernels"
# Probe and audit folders of earlier versions carried no pid: stale after this long
# unchanged.
UNNAMED_AGE = 3600.0

_WITH_PID = re.compile(r"^(?:ag-probe-|autograder-audit-)(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _listened(path: str) -> bool:
    """Whether a process still accepts connections on the Unix socket at `path`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(1.0)
        sock.connect(path)
    except OSError as exc:
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        sock.close()
    return True


def _ours(path: str) -> bool:
    """A real folder (not a symlink) of this user."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()


def _stale(path: str, name: str) -> bool:
    found = _WITH_PID.match(name)
    if found:
        return not _alive(int(found.group(1)))
    if name.startswith((PROBE_PREFIX, AUDIT_PREFIX)):  # an earlier version's: no pid
        # (a probe folder stays empty; a live audit folder changes with every submission)
        with contextlib.suppress(OSError):
            old = time.time() - os.lstat(path).st_mtime > UNNAMED_AGE
            return old and (name.startswith(AUDIT_PREFIX) or not os.listdir(path))
        return False
    if name.startswith(("ag-", ".autograder-")):
        sockets = [
            os.path.join(path, n)
            for n in ("forkserver.sock", "channel")
            if os.path.exists(os.path.join(path, n))
        ]
        return bool(sockets) and not any(_listened(s) for s in sockets) and not _in_use(path)
    return False


def _in_use(path: str) -> bool:
    """Whether a live process works in `path` (the fork server works in the run folder)."""
    real = os.path.realpath(path)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                cwd = os.readlink(f"/proc/{pid}/cwd")
                if cwd == real or cwd.startswith(real + "/"):
                    return True
    return False


def sweep(tmp: str | None = None) -> list[str]:
    """Remove what killed runs left in `tmp` (default: the temporary directory); the
    folders removed."""
    tmp = tmp or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(tmp)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(("ag-", AUDIT_PREFIX, ".autograder-")):
            continue
        path = os.path.join(tmp, name)
        if _ours(path) and _stale(path, name):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove_if_empty(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)
