"""Gradebook writes that cannot collide: one SQLite transaction at a time, machine-wide.

nbgrader opens the gradebook (SQLAlchemy over SQLite) many times per submission. With
several graders writing at once SQLite answers "database is locked" once its busy timeout
runs out, or at once when two readers both try to upgrade to writers, and nbgrader gives
up on that student. Here every process that grades holds an exclusive ``flock`` on a lock
file next to the database for as long as it has a connection checked out of SQLAlchemy's
pool, i.e. for the whole of each transaction. The lock is re-entrant within a process (one
process may nest gradebook sessions, as nbgrader does) and the kernel drops it if the
process dies, so a killed grader never leaves the gradebook locked; SQLite's journal undoes
its unfinished transaction. The gradebook file itself is never opened here: closing a
descriptor on a SQLite file would drop SQLite's own POSIX locks.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

_LOCKS: dict[str, _ProcessLock] = {}
_INSTALLED = False
_GUARD = threading.Lock()
BUSY_TIMEOUT = 300.0  # seconds SQLite itself waits for a lock held by an outside program


class _ProcessLock:
    """An exclusive flock, re-entrant within the process."""

    def __init__(self, path: str):
        self.path = path
        self._rlock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def acquire(self) -> None:
        self._rlock.acquire()
        if self._depth == 0:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                self._rlock.release()
                raise
            self._fd = fd
        self._depth += 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._rlock.release()


def lock_path(database: str | os.PathLike) -> str:
    return str(Path(database).resolve()) + ".lock"


def lock_for(database: str | os.PathLike) -> _ProcessLock:
    path = lock_path(database)
    with _GUARD:
        if path not in _LOCKS:
            _LOCKS[path] = _ProcessLock(path)
        return _LOCKS[path]


def serialize_sqlite() -> None:
    """Make every SQLite file database opened through SQLAlchemy in this process take the
    machine-wide lock for each transaction. Idempotent."""
    global _INSTALLED
    with _GUARD:
        if _INSTALLED:
            return
        _INSTALLED = True
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    @event.listens_for(Engine, "do_connect")
    def _tag(dialect, conn_rec, cargs, cparams):
        if dialect.name != "sqlite":
            return None
        database = cargs[0] if cargs else cparams.get("database")
        if database and database != ":memory:" and not str(database).startswith("file:"):
            conn_rec.info["autograder_lock"] = lock_for(database)
            cparams.setdefault("timeout", BUSY_TIMEOUT)
        return None

    @event.listens_for(Pool, "checkout")
    def _acquire(dbapi_conn, conn_rec, proxy):
        lock = conn_rec.info.get("autograder_lock")
        if lock is not None and not conn_rec.info.get("autograder_locked"):
            lock.acquire()
            conn_rec.info["autograder_locked"] = True

    def _release(dbapi_conn, conn_rec, *args):
        if conn_rec is not None and conn_rec.info.pop("autograder_locked", False):
            conn_rec.info["autograder_lock"].release()

    for name in ("checkin", "invalidate", "soft_invalidate", "close", "detach"):
        event.listen(Pool, name, _release)


# --- feedback after grading by hand ------------------------------------------------------


def hand_grades(gb, assignment: str, student: str) -> str:
    """A digest of what was given by hand to a submission (scores, extra credit,
    comments, flags): its feedback pages are out of date when it changes."""
    return _digest(gb.find_submission(assignment, student))


def hand_grade_digests(gb, assignments) -> dict[tuple[str, str], str]:
    """(assignment, student) -> :func:`hand_grades` for every submission of `assignments`,
    read in a handful of queries (one submission at a time costs a dozen queries each)."""
    from nbgrader.api import Assignment, Comment, Grade, SubmittedAssignment, SubmittedNotebook
    from sqlalchemy.orm import joinedload, selectinload

    notebooks = selectinload(SubmittedAssignment.notebooks)
    query = (
        gb.db.query(SubmittedAssignment)
        .join(SubmittedAssignment.assignment)
        .filter(Assignment.name.in_(sorted(set(assignments))))
        .options(
            joinedload(SubmittedAssignment.assignment),
            joinedload(SubmittedAssignment.student),
            notebooks.joinedload(SubmittedNotebook.notebook),
            notebooks.selectinload(SubmittedNotebook.grades).joinedload(Grade.cell),
            notebooks.selectinload(SubmittedNotebook.comments).joinedload(Comment.cell),
        )
    )
    return {(sub.assignment.name, sub.student.id): _digest(sub) for sub in query}


def _digest(sub) -> str:
    import hashlib
    import json

    given = []
    for nb in sub.notebooks:
        given.append([nb.name, bool(nb.flagged)])
        for g in nb.grades:
            given.append([g.name, g.manual_score, g.extra_credit])
        for c in nb.comments:
            given.append([c.name, c.manual_comment])
    return hashlib.sha256(json.dumps(sorted(given, key=str)).encode()).hexdigest()


def refresh_feedback(course_dir: Path, outcomes) -> list[str]:
    """Keep the feedback pages in step with grades given by hand (formgrader).

    A submission graded in this run has fresh pages: what was given by hand is recorded
    (``.autograder/feedback/<assignment>/<student>``). One reused from an earlier run gets
    its pages written again, with the same tamper banner, when what was given by hand
    changed since. Returns the "student/assignment" whose pages were written again.
    """
    from ..core.nbgrader_io import STATE_DIR, in_dir, nbgrader_api

    course_dir = Path(course_dir)
    graded = [o for o in outcomes if o.status == "graded"]
    if not graded:
        return []
    serialize_sqlite()
    api = nbgrader_api(course_dir)
    with in_dir(course_dir), api.gradebook as gb:
        digests = hand_grade_digests(gb, {o.assignment for o in graded})
    written = []
    exporter_set = False
    with in_dir(course_dir):
        for o in graded:
            digest = digests.get((o.assignment, o.student))
            if digest is None:  # not in the gradebook (removed since)
                continue
            record = course_dir / STATE_DIR / "feedback" / o.assignment / o.student
            before = record.read_text() if record.exists() else None
            if o.reused and before != digest:
                from . import tamper  # (imports nbconvert's HTML exporter: only when needed)

                if not exporter_set:
                    api.config.GenerateFeedback.exporter_class = tamper.FeedbackExporter
                    exporter_set = True
                at = o.reason.find("tampered: ")
                flags = o.reason[at:] if at >= 0 else ""
                tamper.flag_feedback(api.config, flags)
                result = api.generate_feedback(o.assignment, o.student, force=True)
                if not result.get("success"):
                    continue
                written.append(f"{o.student}/{o.assignment}")
            if before != digest:
                record.parent.mkdir(parents=True, exist_ok=True)
                record.write_text(digest)
    return written
