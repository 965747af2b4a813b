"""Tamper evidence for a graded submission, for the summary, the CSV and the feedback.

Four kinds:

- **run-time**: a visible check passed inside the student's kernel but failed when the
  grader re-ran it (:mod:`autograder.judge.verdict` marks such test cells);
- **blocked**: the grader's re-check of a test cell could not reach the student's
  functions because code in the kernel disabled the helper it talks to (the checks it
  blocked score nothing; the mark says what was found disabled);
- **edited cells**: a locked or test cell of the released notebook was edited, deleted,
  or had its nbgrader metadata changed in the submission. nbgrader restores these cells
  before grading, so they cost nothing, but the attempt is worth telling;
- **reads outside its directory**: files opened, folders listed or programs started with
  paths outside the kernel's own directory and the system's read-only places, reported
  by an audit hook in the kernel (:mod:`.audit`). The kernel sandbox (:mod:`.sandbox`)
  makes such reads find nothing; the flag tells that they were tried.

The feedback pages carry the same sentence as a banner at the top: the feedback
exporter (:class:`FeedbackExporter`) renders it from the flags it is configured with
(:class:`TamperBanner`, :func:`flag_feedback`).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from traitlets import Unicode, default

from ..judge.verdict import TAMPER_MIME
from .speedups import CachedHTMLExporter

# nbgrader metadata a student has no reason to change.
_LOCKED_KEYS = ("grade", "solution", "locked", "points", "grade_id", "task")


def _cells(path: Path) -> list[dict] | None:
    """The notebook's cells, or None when it cannot be read as a notebook."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else None


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _nbgrader(cell: dict) -> dict:
    meta = cell.get("metadata")
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbg if isinstance(nbg, dict) else {}


def _norm(value):
    # An editor may write 1.0 back as 1.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def edited_cells(released: Path, submitted: Path) -> list[str]:
    """Locked and test cells of `released` that `submitted` edited, deleted or re-tagged."""
    theirs: dict[str, dict] = {}
    submitted_cells = _cells(submitted)
    if submitted_cells is None:
        return []  # unreadable now (nbgrader read it when grading): nothing to compare
    for cell in submitted_cells:
        gid = _nbgrader(cell).get("grade_id")
        if isinstance(gid, str):
            theirs.setdefault(gid, cell)
    found = []
    for cell in _cells(released) or []:
        meta = _nbgrader(cell)
        gid = meta.get("grade_id")
        if not isinstance(gid, str) or meta.get("solution"):
            continue
        if not (meta.get("locked") or meta.get("grade")):
            continue
        mine = theirs.get(gid)
        if mine is None:
            found.append(f"{gid} deleted")
        elif _source(mine).strip() != _source(cell).strip():
            found.append(f"{gid} edited")
        elif any(_norm(_nbgrader(mine).get(k)) != _norm(meta.get(k)) for k in _LOCKED_KEYS):
            found.append(f"{gid} metadata changed")
    return found


@dataclass
class RuntimeMarks:
    """The test cells the trusted re-check marked: checks changed at run time, and
    re-checks the kernel blocked (with what it found disabled)."""

    changed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    what: list[str] = field(default_factory=list)


def runtime_marks(autograded: Path) -> RuntimeMarks:
    """Test cells the trusted re-check marked (as grade ids) in the autograded notebook."""
    marks = RuntimeMarks()
    for cell in _cells(autograded) or []:
        for o in cell.get("outputs") or []:
            data = o.get("data") if isinstance(o, dict) else None
            mark = data.get(TAMPER_MIME) if isinstance(data, dict) else None
            if mark is None:
                continue
            gid = str(_nbgrader(cell).get("grade_id") or "a test cell")
            blocked = mark.get("blocked") if isinstance(mark, dict) else None
            if isinstance(blocked, list) and blocked:
                marks.blocked.append(gid)
                marks.what += [str(w) for w in blocked if str(w) not in marks.what]
            else:
                marks.changed.append(gid)
            break
    return marks


def describe(
    course_dir: Path, assignment: str, student: str, reads: list[str] | None = None
) -> str:
    """One sentence naming what this submission tampered with, or "".

    `reads`: what the kernel's audit hook reported (:meth:`.audit.Watch.finish`).
    """
    notes = []
    released = sorted((course_dir / "release" / assignment).glob("*.ipynb"))
    for rel in released:
        sub = course_dir / "submitted" / student / assignment / rel.name
        auto = course_dir / "autograded" / student / assignment / rel.name
        marks = runtime_marks(auto)
        if marks.changed:
            notes.append(f"checks changed at run time ({_some(marks.changed)})")
        if marks.blocked:
            notes.append(
                "the kernel-side grading helper was disabled ("
                + "; ".join(marks.what[:3])
                + f"), so these checks could not run and score nothing: {_some(marks.blocked)}"
            )
        edits = edited_cells(rel, sub) if sub.exists() else []
        if edits:
            more = f" and {len(edits) - 5} more" if len(edits) > 5 else ""
            notes.append(
                "locked/test cells changed, restored before grading ("
                + ", ".join(edits[:5])
                + more
                + ")"
            )
    if reads:
        more = f" and {len(reads) - 3} more" if len(reads) > 3 else ""
        notes.append(f"reached outside its directory ({', '.join(reads[:3])}{more})")
    return "tampered: " + "; ".join(notes) if notes else ""


def _some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


# --- the banner on the feedback pages -------------------------------------------------------

BANNER_CLASS = "autograder-tampered"
# Where TamperBanner leaves the banner for the feedback template.
BANNER_RESOURCE = "autograder_tamper_banner"


def banner_html(flags: str) -> str:
    """The banner at the top of a flagged submission's feedback pages.

    nbgrader's feedback shows the graded notebook, where restored cells and reads that
    found nothing leave no trace: the student is told here what the grader saw.
    """
    return (
        f'<div class="{BANNER_CLASS}" role="alert" style="border:2px solid #b00;'
        'padding:0.5em 1em;margin:1em;background:#fff4f4;color:#600">'
        "<strong>Flagged for review.</strong> " + html.escape(flags) + "</div>"
    )


class TamperBanner(Preprocessor):
    """Hands the submission's tamper flags, as the banner, to the feedback template
    (``resources[BANNER_RESOURCE]``; empty when there are none)."""

    flags = Unicode("", help="What the submission tampered with (from describe).").tag(config=True)

    @default("enabled")
    def _enabled_default(self) -> bool:
        return True

    def preprocess(self, nb, resources):
        resources[BANNER_RESOURCE] = banner_html(self.flags) if self.flags else ""
        return nb, resources


# nbgrader's feedback template with the banner first in the page's body. The body block
# of nbgrader's template opens with <body>; the banner goes right after it.
FEEDBACK_TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{%- block body -%}
{%- set banner = resources.get('BANNER_RESOURCE', '') -%}
{%- set page = super() -%}
{%- if not banner -%}
{{ page }}
{%- elif '<body>' in page -%}
{{ page.replace('<body>', '<body>' ~ banner, 1) }}
{%- else -%}
{{ banner ~ page }}
{%- endif -%}
{%- endblock body -%}
""".replace("BANNER_RESOURCE", BANNER_RESOURCE)


class FeedbackExporter(CachedHTMLExporter):
    """The feedback pages' exporter (:class:`~.speedups.CachedHTMLExporter`), with the
    banner of :class:`TamperBanner` rendered at the top of a flagged submission's pages."""

    @default("raw_template")
    def _raw_template_default(self) -> str:
        return FEEDBACK_TEMPLATE

    def _init_preprocessors(self) -> None:
        super()._init_preprocessors()
        self.register_preprocessor(TamperBanner(parent=self), enabled=True)


def flag_feedback(config, flags: str) -> None:
    """Configure `config` (the grading API's) so that the feedback pages generated next
    carry `flags` as their banner ("" for none)."""
    config.TamperBanner.flags = flags
