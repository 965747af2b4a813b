"""A real PostgreSQL server for tests, started on loopback from Debian's binaries.

``make system-packages`` installs Debian's ``postgresql``, whose server programs live in
``/usr/lib/postgresql/<version>/bin`` (not on PATH). :func:`start_postgres` runs
``initdb`` and ``pg_ctl`` there, in a temporary directory, listening on 127.0.0.1 on a
free port (and on a Unix socket in that directory only). PostgreSQL refuses to run as
root: as root, the server runs as the unprivileged user ``nobody`` (through
``runuser``), owning only its temporary directory.

Use the session fixture ``postgres_server`` (registered for every test through
``tests/conftest.py``): ``postgres_server.new_database()`` gives a fresh database's
SQLAlchemy URL, e.g. for nbgrader's ``c.CourseDirectory.db_url``. Without the binaries (or
a way to run them) the fixture skips, saying what is missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERVER_USER = "nobody"


class PostgresUnavailable(RuntimeError):
    """This machine cannot run a PostgreSQL server for the tests (the reason in words)."""


def server_bindir() -> Path:
    """Debian's newest PostgreSQL server binaries (initdb, pg_ctl, postgres)."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        on_path = shutil.which("initdb")
        if on_path:
            return Path(on_path).parent
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): "
            "`make system-packages` installs Debian's postgresql"
        )
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server: `port` on 127.0.0.1, superuser `user` (trust authentication)."""

    directory: Path
    bindir: Path
    port: int
    user: str = "postgres"
    databases: list[str] = field(default_factory=list)
    _as: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of `database` (psycopg2 driver)."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "test") -> str:
        """Create an empty database; its URL."""
        import psycopg2

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.databases.append(name)
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [
                *self._as,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres(timeout: float = 60.0) -> PostgresServer:
    """Initialise and start a throw-away server; raise PostgresUnavailable if this
    machine cannot."""
    bindir = server_bindir()
    directory = Path(tempfile.mkdtemp(prefix="autograder-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresUnavailable(
                "running as root and no runuser to start PostgreSQL as nobody"
            )
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError as exc:
            raise PostgresUnavailable(f"running as root and no user {SERVER_USER!r}") from exc
        os.chown(directory, user.pw_uid, user.pw_gid)
        run_as = [runuser, "-u", SERVER_USER, "--"]
    data = directory / "data"
    port = _free_port()
    init = subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if init.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
    options = f"-h 127.0.0.1 -p {port} -k {directory} -c fsync=off -c full_page_writes=off"
    start = subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(directory / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )
    if start.returncode != 0:
        log = (
            (directory / "server.log").read_text(errors="replace")[-800:]
            if (directory / "server.log").exists()
            else ""
        )
        shutil.rmtree(directory, ignore_errors=True)
        raise PostgresUnavailable(f"pg_ctl start failed: {start.stderr.strip()[-300:]} {log}")
    server = PostgresServer(directory, bindir, port, _as=run_as)
    deadline = time.monotonic() + timeout
    while True:  # accepting TCP connections?
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise PostgresUnavailable(
                    f"the server did not listen on 127.0.0.1:{port}"
                ) from None
            time.sleep(0.2)
    return server


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on loopback for the whole session (see the module doc)."""
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.skip(f"NO POSTGRESQL SERVER FOR THIS TEST: {exc}")
    try:
        yield server
    finally:
        server.stop()
