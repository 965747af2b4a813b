"""Course secrets kept out of what a student gets back.

A kernel's output goes into the graded notebook and from there into the feedback pages
returned to the student. Output that reproduces a line of any assignment's solutions or
hidden tests (the instructor notebooks' ``### BEGIN SOLUTION`` and ``### BEGIN HIDDEN
TESTS`` blocks) is a leak, however the kernel came by it: the line is replaced in the
graded notebook before the feedback is written, and the submission is flagged.

What counts as a secret line: a line inside such a block, stripped, of at least
:data:`MIN_CHARS` characters with a letter or digit in it, that appears nowhere in the
released notebooks outside those blocks or in the course package, not even inside a
longer line there (the students have those lines already: a check's message may quote
`x.grad = None`), and not
in the graded notebook's own cell sources (the student's own code, and the test cells
nbgrader shows in the feedback anyway). So a kernel that prints ``pass``, a bracket or
its own code is left alone. A line of output is redacted when it contains a secret line
(spaces collapsed; also as it reads inside a JSON-encoded notebook).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

MIN_CHARS = 12
PACKAGE = Path(__file__).resolve().parents[1]
BLOCKS = (
    ("### BEGIN SOLUTION", "### END SOLUTION"),
    ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
)
REDACTED = "[redacted: this line reproduced the course's solutions or hidden tests]"
# Output fields that are text (images and other binary data are left as they are).
TEXT_MIME = ("text/", "application/json", "application/javascript")


def _norm(line: str) -> str:
    return " ".join(line.split())


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _cells(path: Path) -> list[dict]:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    cells = nb.get("cells") if isinstance(nb, dict) else None
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []


def split_blocks(text: str) -> tuple[list[str], list[str]]:
    """(lines inside solution or hidden-test blocks, lines outside them) of a cell."""
    inside, outside = [], []
    end = None
    for line in text.splitlines():
        marker = line.strip()
        if end is None:
            start = next((e for b, e in BLOCKS if marker.startswith(b)), None)
            if start is not None:
                end = start
                continue
            outside.append(line)
        elif marker.startswith(end):
            end = None
        else:
            inside.append(line)
    return inside, outside


def _worth_hiding(line: str) -> bool:
    return len(line) >= MIN_CHARS and any(ch.isalnum() for ch in line)


class Secrets:
    """The secret lines of a course (every ``source/*/*.ipynb``), found once."""

    def __init__(self, course_dir: Path):
        course_dir = Path(course_dir)
        secret: set[str] = set()
        public: set[str] = set()
        for path in sorted(course_dir.glob("source/*/*.ipynb")):
            for cell in _cells(path):
                inside, outside = split_blocks(_source(cell))
                secret.update(_norm(line) for line in inside)
                public.update(_norm(line) for line in outside)
        for path in sorted(course_dir.glob("release/*/*.ipynb")):
            for cell in _cells(path):
                public.update(_norm(line) for line in _source(cell).splitlines())
        # The course package is the students' too (a failed check's traceback quotes it).
        for path in sorted(PACKAGE.rglob("*.py")):
            try:
                public.update(_norm(line) for line in path.read_text("utf-8").splitlines())
            except (OSError, ValueError):
                continue
        # A line students have inside a longer one is theirs too: a check's message that
        # says "zero it (x.grad = None)" does not reproduce a solution line `x.grad = None`.
        known = "\n".join(public)
        self.lines = frozenset(s for s in secret - public if _worth_hiding(s) and s not in known)

    def found_in(self, text: str, own: frozenset[str]) -> bool:
        """Whether one line of output reproduces a secret line (other than `own`)."""
        flat = _norm(text)
        if len(flat) < MIN_CHARS:
            return False
        variants = {flat}
        if "\\" in flat:  # as written inside JSON or a repr: \" \' \\ \n \t
            unescaped = flat.replace('\\"', '"').replace("\\'", "'").replace("\\\\", "\\")
            for piece in re.split(r"\\[nt]", unescaped):
                variants.add(_norm(piece))
        for secret in self.lines:
            if secret in own:
                continue
            if any(secret in v for v in variants):
                return True
        return False

    def scrub_text(self, text: str, own: frozenset[str]) -> tuple[str, int]:
        """`text` with each line reproducing a secret replaced; how many were."""
        if not self.lines:
            return text, 0
        out, n = [], 0
        for line in text.splitlines(keepends=True):
            if self.found_in(line, own):
                n += 1
                out.append(REDACTED + ("\n" if line.endswith("\n") else ""))
            else:
                out.append(line)
        return "".join(out), n

    def _scrub_value(self, value, own):
        """A notebook output field (a string, or a list of lines) scrubbed; how many."""
        if isinstance(value, str):
            return self.scrub_text(value, own)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            text, n = self.scrub_text("".join(value), own)
            return (text.splitlines(keepends=True) if n else value), n
        return value, 0

    def scrub_notebook(self, path: Path) -> int:
        """Redact the outputs of the graded notebook at `path` in place; how many lines."""
        try:
            nb = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0
        cells = nb.get("cells") if isinstance(nb, dict) else None
        if not isinstance(cells, list) or not self.lines:
            return 0
        own = frozenset(
            _norm(line)
            for cell in cells
            if isinstance(cell, dict)
            for line in _source(cell).splitlines()
        )
        total = 0
        for cell in cells:
            if not isinstance(cell, dict):
                continue
            for output in cell.get("outputs") or []:
                if not isinstance(output, dict):
                    continue
                total += self._scrub_output(output, own)
        if total:
            text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False)
            Path(path).write_text(text + "\n", encoding="utf-8")
        return total

    def _scrub_output(self, output: dict, own: frozenset[str]) -> int:
        total = 0
        for key in ("text", "evalue", "traceback", "ename"):
            if key in output:
                output[key], n = self._scrub_value(output[key], own)
                total += n
        data = output.get("data")
        if isinstance(data, dict):
            for mime in list(data):
                if mime.startswith(TEXT_MIME):
                    value = data[mime]
                    if not isinstance(value, str | list):
                        value = json.dumps(value)
                        scrubbed, n = self.scrub_text(value, own)
                        if n:
                            data[mime] = {"redacted": REDACTED}
                    else:
                        data[mime], n = self._scrub_value(value, own)
                    total += n
        return total


def scrub(course_dir: Path, secrets: Secrets, assignment: str, student: str) -> int:
    """Redact every graded notebook of a submission; how many output lines were."""
    folder = Path(course_dir) / "autograded" / student / assignment
    return sum(secrets.scrub_notebook(p) for p in sorted(folder.glob("*.ipynb")))


def describe(lines: int) -> str:
    """The tamper note for a submission whose output was redacted ("" for none)."""
    if not lines:
        return ""
    s = "" if lines == 1 else "s"
    return (
        f"its output reproduced the course's solutions or hidden tests ({lines} line{s}, "
        "removed from the graded notebook and the feedback)"
    )
