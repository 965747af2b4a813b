"""An LMS download (a zip, or the folder it unpacks to) into nbgrader's layout.

Each file's name is read by :func:`.layouts.parse`; its student is found in the roster
(:mod:`.roster`) by the id the LMS gives (Canvas user id, Moodle participant id,
Blackboard username), or by the name beside it when the roster has no such id; the
latest attempt of each student is copied to ``submitted/<student>/<assignment>/`` with
nbgrader's ``timestamp.txt`` (Blackboard's time from the name, otherwise the archive
member's own time), replacing an earlier collection of the same assignment unless that
holds a later attempt. Every file not collected is named with the reason.

Nothing is written before the whole download has been read, and nothing of it is kept
in the course directory (nbgrader's ``downloaded/`` is not used), so a broken archive
cannot break a later run. What was collected from where is kept in
``.autograder/lms/<assignment>.json`` for the feedback archive and the grade export.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from . import layouts
from .roster import Roster, usable_id
from .roster import load as load_roster


class CollectError(RuntimeError):
    """A download that cannot be read, or that yields no submission at all."""


@dataclass
class Collected:
    """What one download gave: per student the files copied, and every file skipped."""

    assignment: str
    download: Path
    students: dict[str, list[layouts.Found]] = field(default_factory=dict)
    skipped: list[layouts.Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def lms(self) -> str:
        kinds = sorted({f.lms for files in self.students.values() for f in files})
        return "+".join(kinds)

    def summary(self) -> str:
        n_files = sum(len(v) for v in self.students.values())
        lines = [
            f"{self.download.name}: {len(self.students)} student(s) collected for "
            f"{self.assignment} ({n_files} notebook(s)"
            + (f", {self.lms}" if self.lms else "")
            + f"), {len(self.skipped)} file(s) skipped"
        ]
        late = sorted(s for s, files in self.students.items() if any(f.late for f in files))
        if late:
            lines.append(f"  marked late by the LMS: {', '.join(late)}")
        lines += [f"  skipped {s.path}: {s.reason}" for s in self.skipped]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class _Member:
    path: str
    mtime: datetime
    read: object  # () -> bytes


def _members(download: Path) -> list[_Member]:
    if download.is_dir():
        out = []
        for root, dirs, files in os.walk(download):
            dirs.sort()
            for name in sorted(files):
                p = Path(root) / name
                out.append(
                    _Member(
                        p.relative_to(download).as_posix(),
                        datetime.fromtimestamp(p.stat().st_mtime).replace(microsecond=0),
                        p.read_bytes,
                    )
                )
        return out
    try:
        zf = zipfile.ZipFile(download)
        bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CollectError(
            f"{download}: not a readable zip archive ({exc}); nothing collected"
        ) from exc
    if bad is not None:
        raise CollectError(f"{download}: {bad} is damaged in the archive; nothing collected")
    out = []
    for info in zf.infolist():
        if info.is_dir():
            continue
        try:
            mtime = datetime(*info.date_time)
        except ValueError:
            mtime = datetime.fromtimestamp(download.stat().st_mtime).replace(microsecond=0)
        out.append(_Member(info.filename, mtime, lambda n=info.filename: zf.read(n)))
    return out


def _student_for(found: layouts.Found, roster: Roster) -> tuple[str | None, str]:
    """(course student id, note) for a download's file; None with the reason when the
    roster has nobody to match."""
    what = layouts.ID_NAMES[found.lms]
    if not roster:
        return found.lms_id, ""
    if found.lms == layouts.BLACKBOARD:
        # the username is the name's last part before _attempt_, unless it holds "_" itself
        for login, student in roster.logins():
            if found.head.lower().endswith("_" + login.lower()):
                return student.student_id, ""
        return None, f"no student in the roster with {what} {found.lms_id!r}"
    student = roster.by_lms_id(found.lms_id)
    if student:
        return student.student_id, ""
    if found.lms == layouts.CANVAS:
        named = roster.by_sortable(found.name)
    else:
        named = roster.by_full_name(found.name)
    if len(named) == 1:
        return named[0].student_id, (
            f"{found.name!r} ({what} {found.lms_id}) matched by name to {named[0].student_id}"
        )
    if len(named) > 1:
        ids = ", ".join(s.student_id for s in named)
        return (
            None,
            f"{what} {found.lms_id} is in no roster row, and the name {found.name!r} is in several ({ids})",
        )
    return None, f"no student in the roster with {what} {found.lms_id} or the name {found.name!r}"


def _existing_time(folder: Path) -> datetime | None:
    try:
        text = (folder / "timestamp.txt").read_text().strip()
        return datetime.fromisoformat(text[:19])
    except (OSError, ValueError):
        return None


def manifest_path(course_dir: Path, assignment: str) -> Path:
    return Path(course_dir) / ".autograder" / "lms" / f"{assignment}.json"


def read_manifest(course_dir: Path, assignment: str) -> dict[str, dict]:
    """student -> what the last collection of `assignment` took from the LMS download
    (lms, lms_id, name, file names, time)."""
    path = manifest_path(course_dir, assignment)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def collect(
    *, course_dir: Path, assignment: str, download: Path, roster: Roster | None = None
) -> Collected:
    """Bring `download` (a zip or folder from Canvas, Moodle or Blackboard) into
    submitted/<student>/`assignment`/. CollectError when it cannot be read or yields
    nothing; the error's text names every file skipped and why."""
    course_dir = Path(course_dir).resolve()
    download = Path(download).resolve()
    if not download.exists():
        raise FileNotFoundError(f"no download at {download}")
    if not (course_dir / "source" / assignment).is_dir():
        raise FileNotFoundError(
            f"no assignment {assignment!r}: no {course_dir / 'source' / assignment}"
        )
    roster = roster if roster is not None else load_roster(course_dir)
    expected = {p.name for p in (course_dir / "source" / assignment).glob("*.ipynb")}
    result = Collected(assignment, download)

    # Read everything first: student -> attempt -> [(found, bytes, time)].
    read: dict[str, dict[str, list[tuple[layouts.Found, bytes, datetime]]]] = {}
    for member in _members(download):
        found = layouts.parse(member.path)
        if found is None:
            continue
        if isinstance(found, layouts.Skip):
            result.skipped.append(found)
            continue
        if not found.file_name.lower().endswith(".ipynb"):
            suffix = Path(found.file_name).suffix or "no extension"
            result.skipped.append(
                layouts.Skip(member.path, f"not a notebook ({suffix}) in {found.lms}'s layout")
            )
            continue
        student, note = _student_for(found, roster)
        if student is None:
            result.skipped.append(layouts.Skip(member.path, note))
            continue
        if not usable_id(student):
            result.skipped.append(
                layouts.Skip(member.path, f"{student!r} cannot name a student's folder")
            )
            continue
        if note and note not in result.notes:
            result.notes.append(note)
        when = found.submitted_at or member.mtime
        read.setdefault(student, {}).setdefault(found.attempt, []).append(
            (found, member.read(), when)
        )
    # each attempt at its time: Blackboard's from the name, else its latest file's
    attempts: dict[str, dict[datetime, list[tuple[layouts.Found, bytes]]]] = {}
    for student, by_attempt in read.items():
        for files in by_attempt.values():
            when = max(t for _, _, t in files)
            attempts.setdefault(student, {}).setdefault(when, []).extend(
                (f, data) for f, data, _ in files
            )

    if not roster and attempts:
        kinds = sorted({f.lms for a in attempts.values() for fs in a.values() for f, _ in fs})
        if kinds != [layouts.BLACKBOARD]:
            result.notes.append(
                "no roster imported: students are named by their LMS id "
                "(import one with `autograder roster import`)"
            )

    staged: dict[str, tuple[datetime, list[tuple[layouts.Found, bytes]]]] = {}
    for student, by_time in sorted(attempts.items()):
        latest = max(by_time)
        for when, files in sorted(by_time.items()):
            if when != latest:
                for found, _ in files:
                    result.skipped.append(
                        layouts.Skip(
                            found.path,
                            f"an earlier attempt of {student} ({when:%Y-%m-%d %H:%M:%S}; "
                            f"the latest, {latest:%Y-%m-%d %H:%M:%S}, is collected)",
                        )
                    )
        before = _existing_time(course_dir / "submitted" / student / assignment)
        if before is not None and before > latest:
            for found, _ in by_time[latest]:
                result.skipped.append(
                    layouts.Skip(
                        found.path,
                        f"submitted/{student}/{assignment} already holds a later attempt "
                        f"({before:%Y-%m-%d %H:%M:%S}) than this one ({latest:%Y-%m-%d %H:%M:%S})",
                    )
                )
            continue
        staged[student] = (latest, by_time[latest])

    if not staged:
        raise CollectError(
            "nothing collected: "
            + result.summary()
            + "\n(expected file names like "
            + "; ".join(f"{k}: {v}" for k, v in layouts.EXAMPLES.items())
            + ")"
        )

    # Write: each student's folder built aside, then swapped in.
    submitted = course_dir / "submitted"
    submitted.mkdir(exist_ok=True)
    manifest = read_manifest(course_dir, assignment)
    with tempfile.TemporaryDirectory(dir=submitted, prefix=".collect-") as tmp:
        for student, (when, files) in staged.items():
            folder = Path(tmp) / student
            folder.mkdir()
            names = []
            for found, data in files:
                name = layouts.original_name(Path(found.file_name).name, expected)
                if name != Path(found.file_name).name:
                    result.notes.append(f"{found.path}: saved as {name}")
                if name in names:
                    result.skipped.append(
                        layouts.Skip(found.path, f"a second {name} in {student}'s attempt")
                    )
                    continue
                (folder / name).write_bytes(data)
                names.append(name)
            (folder / "timestamp.txt").write_text(f"{when:%Y-%m-%d %H:%M:%S}\n")
            dest = submitted / student / assignment
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                old = Path(tmp) / f"{student}.old"
                dest.rename(old)
            folder.rename(dest)
            first = files[0][0]
            manifest[student] = {
                **{k: v for k, v in asdict(first).items() if k in ("lms", "lms_id", "name")},
                "late": any(f.late for f, _ in files),
                "files": names,
                "paths": [f.path for f, _ in files],
                "submitted_at": f"{when:%Y-%m-%d %H:%M:%S}",
                "download": download.name,
            }
            result.students[student] = [f for f, _ in files]
    out = manifest_path(course_dir, assignment)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return result
