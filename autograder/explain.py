"""`autograder explain STUDENT ASSIGNMENT`: why a submission got its grade.

Read from what grading left behind (nothing is run): the outcome store's last outcome and
history, the gradebook's score of each cell (and any given by hand), the autograded
notebook's message under each test cell (what differed, the likely cause), limits hit,
tamper flags, and whether the notebook was handed in blank.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import notebooks
from .batch import store, tamper
from .core.cells import RESTORED_NOTE
from .core.nbgrader_io import in_dir, nbgrader_api

_ANSWERED = re.compile(r"raise NotImplementedError|YOUR ANSWER HERE|# YOUR CODE HERE")


def blank(course_dir: Path, assignment: str, student: str) -> bool | None:
    """Whether no answer cell of the submission differs from the released notebook
    (None when there is nothing to compare)."""
    folder = Path(course_dir) / "submitted" / student / assignment
    subs = sorted(folder.glob("*.ipynb"))
    if not subs:
        return None
    for sub in subs:
        try:
            mine = notebooks.read(sub)
        except Exception:
            return None
        answers = {
            notebooks.grade_id(c): c.source.strip()
            for c in mine.cells
            if (c.get("metadata", {}).get("nbgrader") or {}).get("solution")
        }
        versions = list(tamper.released_versions(Path(course_dir), assignment, sub.name))
        if not versions:
            if any(not _ANSWERED.search(src) for src in answers.values()):
                return False
            continue
        stubs = [
            {_meta(c).get("grade_id"): _text(c) for c in cells if _meta(c).get("solution")}
            for cells in versions
        ]
        if not any(all(v.get(g) == src for g, src in answers.items()) for v in stubs):
            return False
    return True


def _meta(cell: dict) -> dict:
    nbg = (cell.get("metadata") or {}).get("nbgrader")
    return nbg if isinstance(nbg, dict) else {}


def _text(cell: dict) -> str:
    src = cell.get("source", "")
    return ("".join(src) if isinstance(src, list) else str(src)).strip()


def _message(text: str) -> list[str]:
    """The lines of a check's message worth showing: its verdict and likely cause."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    keep = [
        line
        for line in lines
        if line.lstrip().startswith(("✓", "✗", "Likely cause")) or "Error" in line.split(":")[0]
    ]
    return keep[:4] or lines[-2:]


def explain(*, course_dir: Path, student: str, assignment: str) -> str:
    """A plain-text account of the submission's grade (see the module doc)."""
    course_dir = Path(course_dir).resolve()
    out: list[str] = [f"{student} / {assignment}"]
    outcomes = store.OutcomeStore.for_course(course_dir)
    try:
        recorded = outcomes.get(assignment, student)
        history = outcomes.history(assignment, student)
    finally:
        outcomes.close()
    if recorded is None:
        out.append("not graded yet (no outcome recorded): run `autograder grade`")
        return "\n".join(out)
    outcome = recorded[1]
    if outcome.status != "graded":
        out.append(f"UNGRADABLE [{outcome.code}]: {outcome.reason}")
    else:
        out.append(f"score {outcome.score:g} / {outcome.max_score:g}")
    if blank(course_dir, assignment, student):
        out.append(
            "BLANK: no answer cell differs from the released notebook (nothing was answered)"
        )
    if outcome.reason and outcome.status == "graded":
        for part in outcome.reason.split("; "):
            kind = "FLAG" if part.startswith("tampered") else "NOTE"
            if part.startswith("timed out") or "limit" in part:
                kind = "LIMIT"
            out.append(f"{kind}: {part}")
    if outcome.status == "graded":
        out += _per_question(course_dir, assignment, student)
    log = store.student_log(course_dir, student, assignment)
    out.append(f"graded {len(history)} time(s); log: {log}")
    latest = store.state_dir(course_dir) / "logs" / "latest"
    if latest.exists():
        out.append(f"last run's worker logs: {latest.resolve()}")
    return "\n".join(out)


def _per_question(course_dir: Path, assignment: str, student: str) -> list[str]:
    out: list[str] = []
    api = nbgrader_api(course_dir)
    grades: dict[str, tuple] = {}
    comments: dict[str, str] = {}
    flagged = False
    with in_dir(course_dir), api.gradebook as gb:
        sub = gb.find_submission(assignment, student)
        for nb in sub.notebooks:
            flagged = flagged or bool(nb.flagged)
            for g in nb.grades:
                grades[g.name] = (g.score, g.max_score, g.manual_score, g.needs_manual_grade)
            for c in nb.comments:
                if c.manual_comment:
                    comments[c.name] = c.manual_comment
    if flagged:
        out.append("flagged in the gradebook (formgrader's Flagged? column)")
    for path in sorted((course_dir / "autograded" / student / assignment).glob("*.ipynb")):
        nb = notebooks.read(path)
        titles = tamper.question_titles(nb)
        restored = [notebooks.grade_id(c) for c in nb.cells if RESTORED_NOTE in c.source]
        if restored:
            out.append(
                "  answer cells missing from the submission, restored unanswered: "
                + ", ".join(map(str, restored))
            )
        messages = notebooks.cell_messages(nb)
        for cell in nb.cells:
            gid = notebooks.grade_id(cell)
            if gid not in grades:
                continue
            score, max_score, manual, needs = grades[gid]
            title = titles.get(gid, gid)
            head = f"  {gid}  {title}: {score or 0:g} / {max_score:g}"
            if manual is not None:
                head += " (score given by hand)"
            elif needs:
                head += " (to grade by hand)"
            out.append(head)
            if (score or 0) < max_score or needs:
                out += [f"      {line}" for line in _message(messages.get(gid, ""))]
            if gid in comments:
                out.append(f"      comment: {comments[gid]}")
    return out
