"""Outcomes of earlier runs, so that a re-run skips what is already done.

One row per (assignment, student), written by the coordinator alone and only after the
submission is completely graded (gradebook, autograded notebook and feedback written), so
a run killed half-way leaves either a finished row or none. Each row carries the
submission's fingerprint (:func:`fingerprint`): a submission is graded again when anything
that decides its grade changed since: its files, the grading settings (limits, feedback),
``nbgrader_config.py``, the parts of the source notebook grading reads (test and locked
cells, points, cell types; not the prose, not the solutions), the files copied next to it,
the installed torch/nbgrader/nbconvert, and the code of this package that runs while
grading. Of the course's check modules (``autograder/assignments/aNN.py``) only those the
assignment's notebook imports count, so editing ``a02.py`` regrades 02 alone; the shared
library (``checking``, ``judge``, ``kernel``, ``batch``, ...) counts for every assignment.
Modules that only talk to people (the command line, the summary, the lint, ``explain``,
the demo) do not count.

Every outcome stored is also appended to a history (``history`` table) and to a
per-student log, ``logs/students/<student>/<assignment>.log``; each run's worker logs go to
a folder of their own (:func:`run_log_dir`), so earlier runs stay readable.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from pathlib import Path

from ..core.nbgrader_io import STATE_DIR
from ..core.outcome import Outcome


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
    """What an outcome depends on: the submitted files, the grading settings and
    everything else that decides the grade (:func:`grading_key`)."""
    h = hashlib.sha256()
    h.update(f"{assignment}\0{student}\0{settings_key}\0".encode())
    _hash_tree(h, Path(course_dir) / "submitted" / student / assignment)
    h.update(b"\0grading\0" + grading_key(Path(course_dir), assignment).encode())
    return h.hexdigest()


# Modules of this package that never run while a submission is graded.
NOT_GRADING = frozenset({"cli.py", "demo.py", "lint.py", "report.py", "explain.py"})
_CHECK_IMPORT = re.compile(
    r"from\s+autograder\.assignments\s+import\s+([\w \t,()]+)"
    r"|(?:from|import)\s+autograder\.assignments\.(\w+)"
)
_PACKAGES = ("torch", "nbgrader", "nbconvert", "nbclient", "ipykernel", "numpy")
_memo: dict[tuple, str] = {}


def _stamp(paths) -> tuple:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(p), None, None))
    return tuple(out)


def _text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def check_modules(source_nb: dict) -> set[str]:
    """The course's check modules (``aNN``) the notebook's code cells import."""
    found: set[str] = set()
    for cell in source_nb.get("cells") or []:
        if cell.get("cell_type") != "code":
            continue
        for names, dotted in _CHECK_IMPORT.findall(_text(cell)):
            if dotted:
                found.add(dotted)
            words = re.split(r"[\s,()]+", names)
            found.update(
                w
                for i, w in enumerate(words)
                if w and w != "as" and (i == 0 or words[i - 1] != "as")
            )
    return found


def graded_cells(source_nb: dict) -> list:
    """What grading reads of an instructor notebook: every cell nbgrader records or
    restores (test, locked, answer and task cells): its id, type, flags and points, and
    the source of locked and test cells (answers are the student's; prose is not graded)."""
    out = []
    for cell in source_nb.get("cells") or []:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if not meta:
            continue
        keep = (meta.get("locked") or meta.get("grade")) and not meta.get("solution")
        out.append(
            [
                meta.get("grade_id"),
                cell.get("cell_type"),
                bool(meta.get("grade")),
                bool(meta.get("solution")),
                bool(meta.get("locked")),
                bool(meta.get("task")),
                float(meta.get("points") or 0),
                _text(cell) if keep else "",
            ]
        )
    return out


def grading_key(course_dir: Path, assignment: str, package: Path | None = None) -> str:
    """A digest of everything besides the submission that decides `assignment`'s grades
    (see the module doc); memoized on the files' sizes and modification times.
    `package`: the folder of this package's code (default: where it is imported from)."""
    if package is None:
        import autograder

        package = Path(autograder.__file__).resolve().parent
    source = Path(course_dir) / "source" / assignment
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else []
    notebooks = [p for p in files if p.suffix == ".ipynb" and p.parent == source]
    config = Path(course_dir) / "nbgrader_config.py"
    code = sorted(
        p for p in package.rglob("*.py") if p.name not in NOT_GRADING or p.parent != package
    )
    stamp = (str(course_dir), assignment, _stamp([*files, config, *code]))
    if stamp in _memo:
        return _memo[stamp]
    h = hashlib.sha256()
    used: set[str] = set()
    for path in files:
        h.update(str(path.relative_to(source)).encode() + b"\0")
        if path in notebooks:
            try:
                nb = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: not a readable notebook ({exc})") from exc
            used |= check_modules(nb)
            h.update(json.dumps(graded_cells(nb), sort_keys=True).encode())
        elif ".ipynb_checkpoints" not in path.parts:
            h.update(hashlib.sha256(path.read_bytes()).digest())
    h.update(b"\0config\0" + (config.read_bytes() if config.exists() else b"<absent>"))
    checks = package / "assignments"
    for path in code:
        if path.parent == checks and path.stem != "__init__" and path.stem not in used:
            continue  # another assignment's checks
        h.update(str(path.relative_to(package)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    for name in _PACKAGES:
        h.update(f"{name}={_version(name)}\0".encode())
    digest = h.hexdigest()
    if len(_memo) > 64:
        _memo.clear()
    _memo[stamp] = digest
    return digest


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def run_log_dir(course_dir: Path, name: str) -> Path:
    """A new folder for one run's worker logs, ``logs/<UTC time>-<name>/``, with
    ``logs/latest`` pointing at it; earlier runs' folders are kept."""
    logs = state_dir(course_dir) / "logs"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = logs / f"{stamp}-{name}"
    n = 1
    while folder.exists():
        n += 1
        folder = logs / f"{stamp}-{name}-{n}"
    folder.mkdir(parents=True)
    latest = logs / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(folder.name)
    except OSError:
        pass
    return folder


def student_log(course_dir: Path, student: str, assignment: str) -> Path:
    """The per-student log: one line per run that graded (or reused) the submission."""
    return state_dir(course_dir) / "logs" / "students" / student / f"{assignment}.log"


def _log_line(outcome: Outcome) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    if outcome.status == "graded":
        what = f"graded {outcome.score:g}/{outcome.max_score:g}"
    else:
        what = f"ungradable [{outcome.code}]"
    how = (
        "unchanged since an earlier run, not graded again"
        if outcome.reused
        else (f"{outcome.seconds:.1f} s, kernel CPU {outcome.kernel_cpu:.1f} s")
    )
    reason = f": {outcome.reason}" if outcome.reason else ""
    return f"{when} UTC  {what} ({how}){reason}\n"


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
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS history ("
            " assignment TEXT NOT NULL, student TEXT NOT NULL, fingerprint TEXT NOT NULL,"
            " outcome TEXT NOT NULL, updated REAL NOT NULL)"
        )
        self.db.commit()
        self.course_dir: Path | None = None

    @classmethod
    def for_course(cls, course_dir: Path) -> OutcomeStore:
        outcome_store = cls(state_dir(course_dir) / "outcomes.sqlite")
        outcome_store.course_dir = Path(course_dir)
        return outcome_store

    def get(self, assignment: str, student: str) -> tuple[str, Outcome] | None:
        row = self.db.execute(
            "SELECT fingerprint, outcome FROM outcomes WHERE assignment = ? AND student = ?",
            (assignment, student),
        ).fetchone()
        if row is None:
            return None
        return row[0], Outcome.from_json(json.loads(row[1]))

    def put(self, outcome: Outcome, fp: str) -> None:
        """Record `outcome` (and append it to the history and the student's log)."""
        with self.db:
            self.db.execute(
                "INSERT INTO history (assignment, student, fingerprint, outcome, updated)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    outcome.assignment,
                    outcome.student,
                    fp,
                    json.dumps(outcome.to_json()),
                    time.time(),
                ),
            )
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
        if self.course_dir is not None:
            log = student_log(self.course_dir, outcome.student, outcome.assignment)
            try:
                log.parent.mkdir(parents=True, exist_ok=True)
                with log.open("a", encoding="utf-8") as fh:
                    fh.write(_log_line(outcome))
            except OSError:  # a log is never worth a grade
                pass

    def history(self, assignment: str, student: str) -> list[tuple[float, Outcome]]:
        """Every outcome recorded for the submission, oldest first, with its time."""
        rows = self.db.execute(
            "SELECT updated, outcome FROM history WHERE assignment = ? AND student = ?"
            " ORDER BY updated",
            (assignment, student),
        )
        return [(t, Outcome.from_json(json.loads(o))) for t, o in rows]

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
