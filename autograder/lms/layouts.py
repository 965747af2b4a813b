"""The file names of each LMS's "download all submissions" archive.

============  ==========================================================================
LMS           a submitted notebook in the download
============  ==========================================================================
Blackboard    ``Derivatives_jdoe7_attempt_2026-11-20-23-59-30_01_derivatives.ipynb``
              (``<assignment name>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>_<file>``; the
              time is local, without a zone; a receipt ``..._attempt_<time>.txt`` per attempt)
Canvas        ``doejane_12345_678901_01_derivatives.ipynb``, late:
              ``doejane_late_12345_678901_01_derivatives.ipynb``
              (``<sortable name>_[late_]<user id>_<submission id>_<file>``; a file uploaded
              again under the same name may end ``-1``, ``-2`` before its extension)
Moodle        ``Jane Doe_12345_assignsubmission_file_/01_derivatives.ipynb`` (one folder per
              participant and plugin; Moodle 4.1 and later drop the folder's last ``_``;
              the number is the participant's id in this assignment), or flat:
              ``Jane Doe_12345_assignsubmission_file_01_derivatives.ipynb``
============  ==========================================================================

:func:`parse` reads one path of a download into a :class:`Found` (who, when, which file),
or a :class:`Skip` saying why it is not a submission. Only Blackboard's names carry a
time; it is read here as the local time it is (never as a time-zone offset, which is how
a date parser reads a ``-MM-SS`` tail).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

BLACKBOARD = "blackboard"
CANVAS = "canvas"
MOODLE = "moodle"
LMS_NAMES = (BLACKBOARD, CANVAS, MOODLE)

# What each LMS calls the id a download names a student by.
ID_NAMES = {
    BLACKBOARD: "Blackboard username",
    CANVAS: "Canvas user id",
    MOODLE: "Moodle participant id",
}

EXAMPLES = {
    BLACKBOARD: "Derivatives_jdoe7_attempt_2026-11-20-23-59-30_01_derivatives.ipynb",
    CANVAS: "doejane_12345_678901_01_derivatives.ipynb",
    MOODLE: "Jane Doe_12345_assignsubmission_file_/01_derivatives.ipynb",
}

_BLACKBOARD = re.compile(
    r"^(?P<head>.+)_attempt_(?P<time>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(?P<rest>.*)$", re.S
)
_CANVAS = re.compile(
    r"^(?P<name>[^\W_]+)_(?:(?P<late>late)_)?(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>.+)$",
    re.S | re.I,
)
# Moodle 4.1 and later name the folder without the trailing "_"
_MOODLE_DIR = re.compile(r"^(?P<name>.+)_(?P<pid>\d+)_assignsubmission_(?P<plugin>[a-z]+)_?$", re.S)
_MOODLE_FLAT = re.compile(
    r"^(?P<name>.+)_(?P<pid>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<file>.+)$", re.S
)
_METADATA = ("__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini")


@dataclass(frozen=True)
class Found:
    """One submitted file, as the download names it."""

    path: str  # the path inside the download
    lms: str
    lms_id: str  # Blackboard username, Canvas user id, Moodle participant id
    name: str  # Canvas's sortable name, Moodle's full name ("" for Blackboard)
    file_name: str  # the file's name as the student uploaded it
    submitted_at: datetime | None = None  # from the name (Blackboard only)
    late: bool = False
    head: str = ""  # Blackboard: "<assignment name>_<username>", to split by the roster
    submission_id: str = ""  # Canvas's submission id

    @property
    def attempt(self) -> str:
        """What groups the files of one attempt: Blackboard's time, Canvas's submission
        id, Moodle's participant (its download holds one attempt per participant)."""
        if self.submitted_at:
            return self.submitted_at.isoformat(sep=" ")
        return f"{self.lms}:{self.submission_id or self.lms_id}"


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str


def blackboard_time(text: str) -> datetime:
    """`2026-11-20-23-59-30` as the local time it names."""
    return datetime.strptime(text, "%Y-%m-%d-%H-%M-%S")


def parse(path: str) -> Found | Skip | None:
    """What the file at `path` (inside a download, '/'-separated) is; None for a folder
    entry or the operating system's own files, which are not worth a line."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if not parts or path.endswith("/"):
        return None
    if any(p in _METADATA or p.startswith("._") for p in parts):
        return None
    base = parts[-1]
    # Moodle: a participant's folder anywhere in the path, or a flat name.
    for part in parts[:-1]:
        m = _MOODLE_DIR.match(part)
        if m:
            return Found(
                path,
                MOODLE,
                m["pid"],
                m["name"].strip(),
                base,
                head=m["plugin"],
            )
    m = _MOODLE_FLAT.match(base)
    if m:
        return Found(path, MOODLE, m["pid"], m["name"].strip(), m["file"], head=m["plugin"])
    m = _BLACKBOARD.match(base)
    if m:
        try:
            when = blackboard_time(m["time"])
        except ValueError:
            return Skip(path, f"Blackboard name with an impossible time {m['time']!r}")
        head, rest = m["head"], m["rest"]
        user = head.rpartition("_")[2]
        if not rest or rest.lower() == ".txt":
            return Skip(path, "Blackboard's receipt of an attempt, not a submitted file")
        if not rest.startswith("_") or len(rest) == 1:
            return Skip(path, "Blackboard name without the submitted file's name")
        if "_" not in head or not user:
            return Skip(path, "Blackboard name without a username before _attempt_")
        return Found(path, BLACKBOARD, user, "", rest[1:], when, head=head)
    m = _CANVAS.match(base)
    if m:
        return Found(
            path,
            CANVAS,
            m["uid"],
            m["name"],
            m["file"],
            late=bool(m["late"]),
            submission_id=m["sid"],
        )
    return Skip(
        path,
        "the name matches no LMS download layout (Blackboard "
        f"{EXAMPLES[BLACKBOARD]!r}, Canvas {EXAMPLES[CANVAS]!r}, Moodle {EXAMPLES[MOODLE]!r})",
    )


_COPY_SUFFIX = re.compile(r"^(?P<stem>.+?)(?:-\d+| ?\(\d+\))(?P<ext>\.[^.]+)$")


def original_name(file_name: str, expected: set[str]) -> str:
    """The notebook's own name when the LMS (or the browser) numbered a re-upload
    (``01_derivatives-1.ipynb``, ``01_derivatives (2).ipynb``) and the plain name is one
    the assignment expects; otherwise `file_name` unchanged."""
    if file_name in expected:
        return file_name
    m = _COPY_SUFFIX.match(file_name)
    if m and m["stem"] + m["ext"] in expected:
        return m["stem"] + m["ext"]
    return file_name
