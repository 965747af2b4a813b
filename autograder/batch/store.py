"""Outcomes of earlier runs, so that a re-run skips what is already done.

One row per (assignment, student), written by the coordinator alone and only after the
submission is completely graded (gradebook, autograded notebook and feedback written), so
a run killed half-way leaves either a finished row or none. Each row carries the
submission's fingerprint: a submission whose files, assignment source or grading settings
changed since is graded again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from ..core.outcome import Outcome

STATE_DIR = ".autograder"


def state_dir(course_dir: Path) -> Path:
    """Where the grading state of a course lives (outcomes database, logs)."""
    return Path(course_dir) / STATE_DIR


def _hash_tree(h, root: Path) -> None:
    if not root.exists():
        h.update(b"<absent>")
        return
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())


def fingerprint(course_dir: Path, assignment: str, student: str, settings_key: str) -> str:
    """What an outcome depends on: the submitted files, the assignment's source and the
    grading settings."""
    h = hashlib.sha256()
    h.update(f"{assignment}\0{student}\0{settings_key}\0".encode())
    _hash_tree(h, Path(course_dir) / "submitted" / student / assignment)
    h.update(b"\0source\0")
    _hash_tree(h, Path(course_dir) / "source" / assignment)
    return h.hexdigest()


class OutcomeStore:
    """A small SQLite table: (assignment, student) -> fingerprint and outcome."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS outcomes ("
            " assignment TEXT NOT NULL, student TEXT NOT NULL, fingerprint TEXT NOT NULL,"
            " outcome TEXT NOT NULL, updated REAL NOT NULL,"
            " PRIMARY KEY (assignment, student))"
        )
        self.db.commit()

    @classmethod
    def for_course(cls, course_dir: Path) -> OutcomeStore:
        return cls(state_dir(course_dir) / "outcomes.sqlite")

    def get(self, assignment: str, student: str) -> tuple[str, Outcome] | None:
        row = self.db.execute(
            "SELECT fingerprint, outcome FROM outcomes WHERE assignment = ? AND student = ?",
            (assignment, student),
        ).fetchone()
        if row is None:
            return None
        return row[0], Outcome.from_json(json.loads(row[1]))

    def put(self, outcome: Outcome, fp: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO outcomes (assignment, student, fingerprint, outcome, updated)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (assignment, student) DO UPDATE SET"
                " fingerprint = excluded.fingerprint, outcome = excluded.outcome,"
                " updated = excluded.updated",
                (
                    outcome.assignment,
                    outcome.student,
                    fp,
                    json.dumps(outcome.to_json()),
                    time.time(),
                ),
            )

    def forget(self, assignment: str, student: str) -> None:
        with self.db:
            self.db.execute(
                "DELETE FROM outcomes WHERE assignment = ? AND student = ?", (assignment, student)
            )

    def all(self, assignment: str) -> dict[str, Outcome]:
        rows = self.db.execute(
            "SELECT student, outcome FROM outcomes WHERE assignment = ?", (assignment,)
        )
        return {s: Outcome.from_json(json.loads(o)) for s, o in rows}

    def close(self) -> None:
        self.db.close()
