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

import functools
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from nbconvert.preprocessors import Preprocessor
from traitlets import Unicode, default

from ..core.nbgrader_io import STATE_DIR
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
    submitted_cells = _cells(submitted)
    if submitted_cells is None:
        return []  # unreadable now (nbgrader read it when grading): nothing to compare
    return _edited(_cells(released) or [], submitted_cells)


def _edited(released: list[dict], submitted: list[dict]) -> list[str]:
    theirs: dict[str, dict] = {}
    for cell in submitted:
        gid = _nbgrader(cell).get("grade_id")
        if isinstance(gid, str):
            theirs.setdefault(gid, cell)
    found = []
    for cell in released:
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


RELEASED = "released"  # under the course's state folder: every notebook ever released


def record_release(course_dir: Path, notebook: Path) -> Path:
    """Keep a copy of a notebook just released (``release/<a>/<nb>.ipynb``) among the
    course's released versions, ``.autograder/released/<a>/<nb>/<digest>.ipynb``."""
    import hashlib
    import shutil

    data = Path(notebook).read_bytes()
    folder = Path(course_dir) / STATE_DIR / RELEASED / notebook.parent.name / notebook.stem
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{hashlib.sha256(data).hexdigest()[:20]}.ipynb"
    if not target.exists():
        shutil.copyfile(notebook, target)
    return target


_GIT_VERSIONS: dict[tuple[str, str], list[list[dict]]] = {}


def _git_versions(path: Path, limit: int = 40) -> list[list[dict]]:
    """The cells of every committed version of `path` (newest first), when it lies in a
    git work tree; [] otherwise."""
    import subprocess

    key = (str(path), str(path.stat().st_mtime_ns) if path.exists() else "")
    if key in _GIT_VERSIONS:
        return _GIT_VERSIONS[key]
    found: list[list[dict]] = []
    try:
        run = {"cwd": path.parent, "capture_output": True, "text": True, "timeout": 30}
        log = subprocess.run(
            ["git", "log", f"-{limit}", "--format=%H", "--", path.name], **run, check=True
        )
        for commit in log.stdout.split():
            show = subprocess.run(["git", "show", f"{commit}:./{path.name}"], **run)
            if show.returncode == 0:
                cells = _cells_of(show.stdout)
                if cells is not None:
                    found.append(cells)
    except (OSError, subprocess.SubprocessError):
        found = []
    _GIT_VERSIONS[key] = found
    return found


def _cells_of(text: str) -> list[dict] | None:
    try:
        nb = json.loads(text)
    except ValueError:
        return None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else None


def released_versions(course_dir: Path, assignment: str, name: str) -> Iterator[list[dict]]:
    """The cells of every version of notebook `name` the course released: today's
    ``release/`` copy, the copies ``autograder release`` kept (:func:`record_release`) and
    the versions of ``release/`` in git's history, in that order. Lazily: git's history is
    read only by a caller that gets that far (a submission of today's release stops at the
    first)."""
    current = Path(course_dir) / "release" / assignment / name
    if current.exists():
        cells = _cells(current)
        if cells is not None:
            yield cells
    kept = Path(course_dir) / STATE_DIR / RELEASED / assignment / Path(name).stem
    for path in sorted(kept.glob("*.ipynb"), key=lambda p: p.stat().st_mtime, reverse=True):
        cells = _cells(path)
        if cells is not None:
            yield cells
    if current.exists():
        yield from _git_versions(current)


def _graded_ids(cells: list[dict]) -> list[str]:
    return [
        str(_nbgrader(c)["grade_id"])
        for c in cells
        if _nbgrader(c).get("grade") and isinstance(_nbgrader(c).get("grade_id"), str)
    ]


@dataclass
class Comparison:
    """A submission against the released version it is closest to."""

    edits: list[str] = field(default_factory=list)  # tampering with locked/test cells
    added: list[str] = field(default_factory=list)  # graded cells released after it


def compare(course_dir: Path, assignment: str, student: str, name: str) -> Comparison:
    """Compare the student's notebook `name` with the released version it differs least
    from: an instructor's later edits (points, new questions, reworded tests) are not the
    student's. Graded cells of today's assignment that version lacks are `added`."""
    sub = Path(course_dir) / "submitted" / student / assignment / name
    if not sub.exists():
        return Comparison()
    submitted = _cells(sub)
    if submitted is None:
        return Comparison()
    best: tuple[list[str], list[dict]] | None = None
    for cells in released_versions(course_dir, assignment, name):
        edits = _edited(cells, submitted)
        if best is None or len(edits) < len(best[0]):
            best = (edits, cells)
        if not edits:
            break
    if best is None:
        return Comparison()
    edits, version = best
    today = Path(course_dir) / STATE_DIR / "generated" / assignment / name
    if not today.exists():
        today = Path(course_dir) / "release" / assignment / name
    had = set(_graded_ids(version))
    added = [gid for gid in _graded_ids(_cells(today) or []) if gid not in had]
    return Comparison(edits=edits, added=added)


def notes(course_dir: Path, assignment: str, student: str) -> str:
    """A sentence naming the questions added to the assignment after the version this
    submission answered was released (restored as unanswered, they score 0), or ""."""
    added = []
    for name in _notebook_names(course_dir, assignment):
        added += compare(course_dir, assignment, student, name).added
    if not added:
        return ""
    return f"added after this notebook was released, scored 0: {_some(added)}"


def _notebook_names(course_dir: Path, assignment: str) -> list[str]:
    names = {p.name for p in (Path(course_dir) / "source" / assignment).glob("*.ipynb")}
    names |= {p.name for p in (Path(course_dir) / "release" / assignment).glob("*.ipynb")}
    return sorted(names)


def describe(
    course_dir: Path, assignment: str, student: str, reads: list[str] | None = None
) -> str:
    """One sentence naming what this submission tampered with, or "".

    `reads`: what the kernel's audit hook reported (:meth:`.audit.Watch.finish`). Edited
    cells are those that differ from every version of the notebook the course released
    (:func:`compare`), not from today's source.
    """
    notes_ = []
    for name in _notebook_names(course_dir, assignment):
        auto = course_dir / "autograded" / student / assignment / name
        marks = runtime_marks(auto)
        if marks.changed:
            notes_.append(f"checks changed at run time ({_some(marks.changed)})")
        if marks.blocked:
            notes_.append(
                "the kernel-side grading helper was disabled ("
                + "; ".join(marks.what[:3])
                + f"), so these checks could not run and score nothing: {_some(marks.blocked)}"
            )
        edits = compare(course_dir, assignment, student, name).edits
        if edits:
            more = f" and {len(edits) - 5} more" if len(edits) > 5 else ""
            notes_.append(
                "locked/test cells changed, restored before grading ("
                + ", ".join(edits[:5])
                + more
                + ")"
            )
    if reads:
        more = f" and {len(reads) - 3} more" if len(reads) > 3 else ""
        notes_.append(f"reached outside its directory ({', '.join(reads[:3])}{more})")
    return "tampered: " + "; ".join(notes_) if notes_ else ""


def mark_flagged(api, assignment: str, student: str, flags: str) -> None:
    """Set nbgrader's own ``flagged`` field of the submission's notebooks (formgrader's
    "Flagged?" column) to whether `flags` names anything."""
    from nbgrader.api import MissingEntry

    with api.gradebook as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return
        for nb in sub.notebooks:
            nb.flagged = bool(flags)
        gb.db.commit()


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


# Read offline: messages wrap instead of running off a box that does not scroll.
FEEDBACK_CSS = """<style>
div.output_area pre, div.output_subarea pre, div.output_text pre, .jp-OutputArea-output pre {
  white-space: pre-wrap; overflow-wrap: anywhere; word-break: break-word;
}
div.output_subarea { max-width: 100%; overflow-x: visible; }
math[display="block"] { display: block; margin: 0.6em 0; }
</style>
"""
_MATHJAX = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->"
    r"|<script[^>]*src=\"[^\"]*mathjax[^\"]*\"[^>]*>\s*</script>",
    re.S | re.I,
)
_DISPLAY_MATH = re.compile(r"(?<!\\)\$\$(.+?)\$\$|\\\[(.+?)\\\]", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)([^$\n]+?)(?<!\\)\$|\\\((.+?)\\\)")
_TOKEN = "AUTOGRADERMATH{}X"
_CHECK_TITLE = re.compile(r"[\u2713\u2717]\s+(Q[\w.\-]*\s+[^:\n]+?):")
_CALL = re.compile(r"\.(check_\w+)\(")


def tex_to_mathml(tex: str, display: bool = False) -> str | None:
    """MathML for a TeX formula (browsers draw it without any script), or None when the
    formula is beyond the converter (the TeX is then shown as it is written)."""
    try:
        from latex2mathml.converter import convert
    except ImportError:  # pragma: no cover - a dependency of the package
        return None
    try:
        return convert(tex.strip(), display="block" if display else "inline")
    except Exception:  # the converter raises several kinds on TeX it does not know
        return None


def math_to_tokens(source: str) -> tuple[str, list[str]]:
    """`source` (markdown) with every formula replaced by a token, and the tokens' HTML."""
    html_parts: list[str] = []

    def swap(match: re.Match, display: bool) -> str:
        tex = next(g for g in match.groups() if g is not None)
        rendered = tex_to_mathml(tex, display)
        if rendered is None:
            rendered = f"<code>{html.escape(match.group(0))}</code>"
        html_parts.append(rendered.replace("\n", ""))
        return _TOKEN.format(len(html_parts) - 1)

    source = _DISPLAY_MATH.sub(lambda m: swap(m, True), source)
    source = _INLINE_MATH.sub(lambda m: swap(m, False), source)
    return source, html_parts


@functools.lru_cache(maxsize=4096)
def _math_tokens(source: str) -> tuple[str, tuple[str, ...]]:
    """:func:`math_to_tokens`, remembered: a class's pages share the instructor's text."""
    tokenized, parts = math_to_tokens(source)
    return tokenized, tuple(parts)


def question_titles(nb) -> dict[str, str]:
    """grade_id -> what a test cell checks, for the contents list: the question its
    check names ("Q1.1 forward_difference"), else the check it calls."""
    titles: dict[str, str] = {}
    for cell in nb.cells:
        meta = _nbgrader(cell)
        gid = meta.get("grade_id")
        if not isinstance(gid, str) or not meta.get("grade") or meta.get("solution"):
            continue
        text = "".join(
            str(o.get("text", "")) + "\n".join(map(str, o.get("traceback", []) or []))
            for o in cell.get("outputs", [])
        )
        found = _CHECK_TITLE.search(re.sub(r"\x1b\[[0-9;]*m", "", text))
        if found:
            titles[gid] = found.group(1).strip()
        else:
            call = _CALL.search(_source(cell))
            titles[gid] = f"{gid} ({call.group(1)})" if call else gid
    return titles


class FeedbackExporter(CachedHTMLExporter):
    """The feedback pages' exporter (:class:`~.speedups.CachedHTMLExporter`), with the
    banner of :class:`TamperBanner` rendered at the top of a flagged submission's pages,
    readable offline: math drawn as MathML in the page (no MathJax from the network),
    messages wrapped, each test cell named in the contents list by its question."""

    @default("raw_template")
    def _raw_template_default(self) -> str:
        return FEEDBACK_TEMPLATE

    def _init_preprocessors(self) -> None:
        super()._init_preprocessors()
        self.register_preprocessor(TamperBanner(parent=self), enabled=True)

    @jinja2.pass_context
    def markdown2html(self, context, source):
        tokenized, parts = _math_tokens(source)
        out = super().markdown2html(context, tokenized)
        for i, part in enumerate(parts):
            out = out.replace(_TOKEN.format(i), part)
        return out

    def from_notebook_node(self, nb, resources=None, **kw):
        page, resources = super().from_notebook_node(nb, resources, **kw)
        return offline_page(page, nb), resources


def offline_page(page: str, nb) -> str:
    """A feedback page (HTML) made to read offline: no MathJax script (the exporter draws
    math as MathML), the wrapping style, the contents list naming each question."""
    page = _MATHJAX.sub("", page)
    page = page.replace("</head>", FEEDBACK_CSS + "</head>", 1)
    for gid, title in question_titles(nb).items():
        page = page.replace(
            f'<a href="#{gid}">Test cell</a>', f'<a href="#{gid}">{html.escape(title)}</a>'
        )
    return page


def flag_feedback(config, flags: str) -> None:
    """Configure `config` (the grading API's) so that the feedback pages generated next
    carry `flags` as their banner ("" for none)."""
    config.TamperBanner.flags = flags
