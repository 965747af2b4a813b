"""The class list: imported once into nbgrader's gradebook, read back to match downloads.

A roster CSV has one row per student and a header naming its columns (any order, any
case; spaces, dashes and underscores alike):

==============  ============================================================  ==========
column          what                                                          required
==============  ============================================================  ==========
``student_id``  the course's id: folder names, gradebook, feedback            yes
``first_name``  (also ``first``, ``given_name``)                              yes
``last_name``   (also ``last``, ``surname``, ``family_name``)                 yes
``email``       (also ``email_address``)                                      no
``lms_id``      the LMS's id: Canvas user id, Moodle participant id,          no
                Blackboard username (also ``lms_user_id``)
``login``       the LMS login (Canvas's SIS Login ID, Blackboard's username)  no
``section``                                                                   no
==============  ============================================================  ==========

Names, email and the LMS id go into the gradebook (nbgrader's ``Student``: ``first_name``,
``last_name``, ``email``, ``lms_user_id``) through nbgrader's own
``Gradebook.update_or_create_student``; the login and section, which nbgrader has no
field for, are kept beside it in ``.autograder/roster.csv``. Importing again updates
everyone named and leaves the others (and every grade) alone.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..core.nbgrader_io import in_dir, load_config, tools_on_path

COLUMNS = ("student_id", "first_name", "last_name", "email", "lms_id", "login", "section")
REQUIRED = ("student_id", "first_name", "last_name")
ALIASES = {
    "student_id": ("student_id", "student", "studentid"),
    "first_name": ("first_name", "first", "given_name", "firstname"),
    "last_name": ("last_name", "last", "surname", "family_name", "lastname"),
    "email": ("email", "email_address", "e_mail", "mail"),
    "lms_id": ("lms_id", "lms_user_id", "lmsid"),
    "login": ("login", "sis_login_id", "username", "user_name"),
    "section": ("section", "sections"),
}
# A student id names folders (submitted/<id>/, feedback/<id>/): nothing a path could misread.
_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$")


def usable_id(student_id: str) -> bool:
    """Whether `student_id` can name the student's folders."""
    return bool(_STUDENT_ID.match(student_id))


class RosterError(ValueError):
    """A roster that cannot be imported: every problem, each naming its line."""

    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"{path}: {len(problems)} problem(s), nothing imported:\n  " + "\n  ".join(problems)
        )


@dataclass(frozen=True)
class Student:
    student_id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_id: str = ""
    login: str = ""
    section: str = ""

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)

    @property
    def sortable_name(self) -> str:
        """'Last, First' (Canvas's Student column)."""
        return ", ".join(p for p in (self.last_name, self.first_name) if p)


def _key(header: str) -> str:
    return re.sub(r"[\s\-_]+", "_", header.strip().lower())


def read_csv(path: Path) -> list[Student]:
    """The students of a roster CSV; RosterError naming every bad line."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise RosterError(path, ["empty file: expected a header naming " + ", ".join(COLUMNS)])
    header = [_key(h) for h in rows[0]]
    where: dict[str, int] = {}
    for column, names in ALIASES.items():
        for i, h in enumerate(header):
            if h in names and column not in where:
                where[column] = i
    missing = [c for c in REQUIRED if c not in where]
    if missing:
        raise RosterError(
            path,
            [
                f"line 1: no column {', '.join(missing)} (the header has {', '.join(rows[0])}; "
                f"expected {', '.join(COLUMNS)})"
            ],
        )
    students: list[Student] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    seen_lms: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        values = {c: (row[i].strip() if i < len(row) else "") for c, i in where.items()}
        student = Student(**values)
        sid = student.student_id
        if not sid:
            problems.append(f"line {line}: no student id")
            continue
        if not usable_id(sid):
            problems.append(
                f"line {line}: student id {sid!r} is not usable as a folder name "
                "(letters, digits, and . _ @ + - after the first character)"
            )
            continue
        if sid in seen:
            problems.append(f"line {line}: student id {sid!r} already on line {seen[sid]}")
            continue
        if student.lms_id and student.lms_id in seen_lms:
            problems.append(
                f"line {line}: LMS id {student.lms_id!r} already on line {seen_lms[student.lms_id]}"
            )
            continue
        seen[sid] = line
        if student.lms_id:
            seen_lms[student.lms_id] = line
        students.append(student)
    if problems:
        raise RosterError(path, problems)
    if not students:
        raise RosterError(path, ["no students below the header"])
    return students


@contextlib.contextmanager
def gradebook(course_dir: Path, *, create: bool = True) -> Iterator:
    """nbgrader's Gradebook of the course (its configured ``db_url``), opened in the
    course directory; None, with `create` false, where an SQLite gradebook does not
    exist yet (nothing is created just to be read)."""
    from nbgrader.api import Gradebook
    from nbgrader.coursedir import CourseDirectory

    course_dir = Path(course_dir).resolve()
    coursedir = CourseDirectory(config=load_config(course_dir))
    url = coursedir.db_url
    with in_dir(course_dir):
        if not create and url.startswith("sqlite:///"):
            if not Path(url[len("sqlite:///") :]).exists():
                yield None
                return
        tools_on_path()  # nbgrader runs alembic as a command to set up a new gradebook
        gb = Gradebook(url, coursedir.course_id)
        try:
            yield gb
        finally:
            gb.close()


def sidecar(course_dir: Path) -> Path:
    """Where the roster's login and section columns are kept (nbgrader has no field)."""
    return Path(course_dir) / ".autograder" / "roster.csv"


def import_roster(*, course_dir: Path, path: Path) -> tuple[list[Student], list[str]]:
    """Import a roster CSV into the course's gradebook. Returns the students imported and
    the ids of students already in the gradebook that this roster does not name (kept)."""
    course_dir = Path(course_dir).resolve()
    students = read_csv(path)
    with gradebook(course_dir) as gb:
        for s in students:
            gb.update_or_create_student(
                s.student_id,
                first_name=s.first_name or None,
                last_name=s.last_name or None,
                email=s.email or None,
                lms_user_id=s.lms_id or None,
            )
        named = {s.student_id for s in students}
        others = sorted(st.id for st in gb.students if st.id not in named)
    kept = {s.student_id: s for s in _read_sidecar(course_dir)}
    kept.update({s.student_id: s for s in students})
    out = sidecar(course_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for s in sorted(kept.values(), key=lambda s: s.student_id):
            w.writerow(asdict(s))
    tmp.replace(out)
    return students, others


def _read_sidecar(course_dir: Path) -> list[Student]:
    path = sidecar(course_dir)
    if not path.exists():
        return []
    names = {f.name for f in fields(Student)}
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            Student(**{k: (v or "") for k, v in row.items() if k in names})
            for row in csv.DictReader(fh)
            if row.get("student_id")
        ]


class Roster:
    """The course's students (the gradebook's, with the login and section kept beside
    it), and the lookups a download's names need."""

    def __init__(self, students: list[Student]):
        self.students = sorted(students, key=lambda s: (s.last_name, s.first_name, s.student_id))
        self.by_id = {s.student_id: s for s in self.students}

    def __bool__(self) -> bool:
        return bool(self.students)

    def get(self, student_id: str) -> Student:
        return self.by_id.get(student_id) or Student(student_id)

    def by_lms_id(self, lms_id: str) -> Student | None:
        return next((s for s in self.students if s.lms_id and s.lms_id == lms_id), None)

    def by_login(self, login: str) -> Student | None:
        low = login.lower()
        for s in self.students:
            if low in {v.lower() for v in (s.login, s.lms_id, s.student_id) if v}:
                return s
        return None

    def logins(self) -> list[tuple[str, Student]]:
        """Every (login-like id, student), longest first (to split a name at one)."""
        pairs = [(v, s) for s in self.students for v in {s.login, s.lms_id, s.student_id} if v]
        return sorted(pairs, key=lambda p: -len(p[0]))

    def by_full_name(self, name: str) -> list[Student]:
        want = " ".join(name.lower().split())
        return [s for s in self.students if " ".join(s.full_name.lower().split()) == want]

    def by_sortable(self, compact: str) -> list[Student]:
        """Canvas's file-name form of the sortable name: 'Doe, Jane' as 'doejane'."""
        want = compact.lower()
        return [
            s
            for s in self.students
            if re.sub(r"[\W_]+", "", (s.last_name + s.first_name).lower()) == want
        ]


def load(course_dir: Path) -> Roster:
    """The gradebook's students, with the login and section of the last roster import."""
    course_dir = Path(course_dir).resolve()
    extra = {s.student_id: s for s in _read_sidecar(course_dir)}
    students: dict[str, Student] = dict(extra)
    with gradebook(course_dir, create=False) as gb:
        for st in gb.students if gb is not None else []:
            side = extra.get(st.id, Student(st.id))
            students[st.id] = Student(
                st.id,
                st.first_name or side.first_name,
                st.last_name or side.last_name,
                st.email or side.email,
                st.lms_user_id or side.lms_id,
                side.login,
                side.section,
            )
    return Roster(list(students.values()))
