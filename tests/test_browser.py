"""The student's experience in JupyterLab, in a real browser.

For every release notebook, one JupyterLab server (this environment's `jupyter lab`, on a
temporary copy of the course) and one headless Chromium do what a student does: open the
notebook, Run All, read the checks; type a wrong and then a correct answer into the first
answered question's cell and run it; press nbgrader's Validate button; and, for a notebook
that draws, Run All on a copy answered with the instructor's solutions, to see the figures
inline. Assertions read the page: rendered output text, rendered images and the Validate
dialog.

Screenshots of each state land in `artifacts/screenshots/` (git-ignored). With
`UPDATE_SCREENSHOTS=1` they are also copied, compressed, into `docs/screenshots/`, which
the README shows.
"""

from __future__ import annotations

import os
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autograder import notebooks
from tests import browser_support as bs

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.relative_to(ROOT / "release") for p in ROOT.glob("release/*/*.ipynb"))
ARTIFACTS = ROOT / "artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}

# "A few lines": the question line, a likely cause or two, and the expected-vs-got summary.
MAX_LINES = 8


def in_browser(fn):
    """Browser tests are slow: the quick subset (`-m "not slow"`) leaves them out."""
    return pytest.mark.browser(pytest.mark.slow(fn))


def _label(path: Path) -> str:
    """`01_derivatives` for a one-notebook assignment, else `01_derivatives-part`."""
    return path.parent.name if path.stem == path.parent.name else f"{path.parent.name}-{path.stem}"


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader") or {}


def _is_test(cell) -> bool:
    meta = _nbgrader(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _is_answer(cell) -> bool:
    return cell.cell_type == "code" and bool(_nbgrader(cell).get("solution"))


def _first_answered_question(nb) -> tuple[int, int]:
    """(answer cell, test cell): the first answer cell directly followed by an auto-graded test."""
    for i, cell in enumerate(nb.cells[:-1]):
        if _is_answer(cell) and _is_test(nb.cells[i + 1]):
            return i, i + 1
    raise AssertionError("no answer cell is directly followed by an auto-graded test cell")


def _wrong(code: str, test_source: str) -> str:
    """The correct answer with a sign error in the function the test cell checks."""
    names = [n for n in bs.defined_names(code) if re.search(rf"\b{n}\b", test_source)]
    for name in names:
        if (flipped := bs.sign_flipped(code, name)) is not None:
            return flipped
    # No `return` to flip: an answer that returns nothing is wrong for any check.
    return re.sub(r"raise NotImplementedError\(\)", "return None", code)


def _draws(nb) -> bool:
    """Does the notebook draw (matplotlib, a plot_ or draw helper)?"""
    pattern = re.compile(r"\bplt\.|\bplot_\w+\(|\bdraw\w*\(")
    return any(pattern.search(c.source) for c in nb.cells if c.cell_type == "code")


def _traceback_in(text: str) -> bool:
    return bool(bs.TRACEBACK.search(text))


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- the course copy, the server and the browser ------------------------------------------


@dataclass
class Lab:
    server: bs.LabServer
    root: Path
    page: object


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = bs.ensure_chromium()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    base = tmp_path_factory.mktemp("jupyterlab")
    assignments = sorted({p.parent.name for p in NOTEBOOKS})
    root = bs.copy_course(
        ROOT / "release", ROOT / "nbgrader_config.py", base / "course", assignments
    )
    # Beside each notebook that draws, a copy answered with the instructor's solutions.
    for path in NOTEBOOKS:
        if not _draws(notebooks.read(ROOT / "release" / path)):
            continue
        answers = notebooks.solutions(notebooks.read(ROOT / "source" / path))
        solved = notebooks.fill(notebooks.read(ROOT / "release" / path), answers)
        notebooks.write(solved, root / path.parent / f"{path.stem}-solved.ipynb")
    server = bs.LabServer.start(root, base / "state")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(bs.CHROMIUM), args=bs.CHROMIUM_ARGS)
            try:
                # One page for the whole module: JupyterLab loads once, notebooks open in it.
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(120_000)
                bs.open_lab(page, server)
                yield Lab(server, root, page)
            finally:
                browser.close()
    finally:
        server.stop()


# --- one student's visit to one notebook ------------------------------------------------


@dataclass
class Visit:
    """What the page showed at each step (cell indices are the notebook's)."""

    path: Path
    nb: object
    answer: int
    test: int
    prompts: list[str] = field(default_factory=list)
    not_answered: dict[int, str] = field(default_factory=dict)
    answered_names: list[str] = field(default_factory=list)
    wrong_code: str = ""
    failed: str = ""
    failed_error: bool = False
    passed: str = ""
    passed_error: bool = False
    dialog: str = ""
    solved_prompts: list[str] = field(default_factory=list)
    solved: dict[int, str] = field(default_factory=dict)
    solved_errors: list[int] = field(default_factory=list)
    rendered_images: list[list[int]] = field(default_factory=list)
    saved_images: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def tests(self) -> list[int]:
        return [i for i, c in enumerate(self.nb.cells) if _is_test(c)]

    @property
    def code_cells(self) -> list[int]:
        return [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code"]

    def step(self, name: str, fn: Callable[[], None]) -> bool:
        """Run one step; record its time, or the error that stopped the visit."""
        if self.errors:
            return False
        start = time.monotonic()
        try:
            fn()
        except Exception:
            self.errors[name] = traceback.format_exc(limit=6)
            return False
        finally:
            self.seconds[name] = round(time.monotonic() - start, 1)
        return True

    def require(self, *steps: str) -> None:
        for s in steps:
            if s not in self.seconds or s in self.errors:
                earlier = "".join(f"\n[{k}] {v}" for k, v in self.errors.items())
                pytest.fail(f"step {s!r} did not complete{earlier}")


def _shot(name: str) -> Path:
    return ARTIFACTS / name


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=_label)
def visit(request, lab) -> Visit:
    path: Path = request.param
    label = _label(path)
    nb = notebooks.read(ROOT / "release" / path)
    answer, test = _first_answered_question(nb)
    v = Visit(path, nb, answer, test)
    solution = notebooks.solutions(notebooks.read(ROOT / "source" / path))[
        notebooks.grade_id(nb.cells[answer])
    ]
    v.answered_names = bs.defined_names(solution)
    v.wrong_code = _wrong(solution, nb.cells[test].source)
    first_code = v.code_cells[0]

    page = lab.page
    ui = bs.NotebookUI(page, lab.server, str(path), len(nb.cells))

    def run_all():
        ui.run_all(first_code_cell=first_code)
        v.prompts = ui.prompts()
        v.not_answered = {i: ui.text(i) for i in v.code_cells}
        ui.screenshot(_shot(f"{label}-not-answered.png"), bottom=test)

    def wrong():
        ui.type_into(answer, v.wrong_code)
        ui.run_with_next(answer)
        v.failed = ui.text(test)
        v.failed_error = any(o.is_error for o in ui.outputs(test))
        ui.screenshot(_shot(f"{label}-failed.png"), bottom=test)

    def right():
        ui.type_into(answer, solution)
        ui.run_with_next(answer)
        v.passed = ui.text(test)
        v.passed_error = any(o.is_error for o in ui.outputs(test))
        ui.screenshot(_shot(f"{label}-passed.png"), bottom=test)

    def validate():
        v.dialog = ui.validate()
        ui.screenshot(_shot(f"{label}-validate.png"))
        ui.close_dialog()
        ui.close()

    solved_path = path.parent / f"{path.stem}-solved.ipynb"
    solved_ui = bs.NotebookUI(page, lab.server, str(solved_path), len(nb.cells))

    def solved():
        solved_ui.open()
        solved_ui.run_all(first_code_cell=first_code)
        v.solved_prompts = solved_ui.prompts()
        v.solved = {i: solved_ui.text(i) for i in v.code_cells}
        # Test cells must not write to stderr at all (nbgrader would score them 0).
        v.solved_errors = [i for i in v.tests if any(o.is_error for o in solved_ui.outputs(i))]
        with_images = []
        for i in v.code_cells:
            images = [im for o in solved_ui.outputs(i) for im in o.images]
            v.rendered_images += images
            if images:
                with_images.append(i)
        solved_ui.save()
        saved = notebooks.read(lab.root / solved_path)
        v.saved_images = sum(
            1
            for c in saved.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})
        )
        if with_images:
            solved_ui.screenshot(_shot(f"{label}-figure.png"), bottom=with_images[0])
        solved_ui.close()

    try:
        v.step("open", ui.open)
        v.step("run_all", run_all)
        v.step("wrong", wrong)
        v.step("right", right)
        v.step("validate", validate)
        if _draws(nb):
            v.step("solved", solved)
    finally:
        # Whatever happened, leave no kernel running and no dialog or tab open.
        lab.server.shutdown_kernels()
        if v.errors:
            bs.open_lab(page, lab.server)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1" and not v.errors:
        _update_docs(label)
    return v


def _update_docs(label: str) -> None:
    """Copy this notebook's screenshots into docs/screenshots/, as small palette PNGs."""
    from PIL import Image

    DOCS.mkdir(parents=True, exist_ok=True)
    for state in ("failed", "passed", "validate"):
        src = ARTIFACTS / f"{label}-{state}.png"
        with Image.open(src) as im:
            im.convert("RGB").quantize(colors=64).save(DOCS / src.name, optimize=True)


# --- what the student sees ------------------------------------------------------------


@in_browser
def test_run_all_reaches_every_visible_test(visit):
    """After Run → Run All Cells, has every test cell run, not just those before the first ✗?"""
    visit.require("run_all")
    skipped = [i for i in visit.tests if not re.search(r"\[\d+\]", visit.prompts[i])]
    assert not skipped, (
        f"Run All stopped at the first failed check: test cells {skipped} never ran. "
        "JupyterLab aborts the rest of the queue after an error unless the cell is tagged "
        "`raises-exception` (it then sends stop_on_error=False for that cell)."
    )


@in_browser
def test_unanswered_checks_say_so_in_plain_words(visit):
    """Does every visible test of a blank notebook say "not answered yet", without a traceback?"""
    visit.require("run_all")
    ran = [i for i in visit.tests if re.search(r"\[\d+\]", visit.prompts[i])]
    assert ran, "no test cell ran"
    for i in ran:
        text = visit.not_answered[i]
        assert "not answered yet" in text, f"cell {i}: {visit.nb.cells[i].source!r} shows\n{text}"
        assert not _traceback_in(text), f"cell {i} shows a traceback:\n{text}"
        assert len(_lines(text)) <= MAX_LINES, f"cell {i} says too much:\n{text}"
    # Nor does any other cell the student ran (demonstrations, plots, answer cells).
    shown = {i: t for i, t in visit.not_answered.items() if _traceback_in(t)}
    assert not shown, f"cells with a traceback in a blank notebook: {shown}"


@in_browser
def test_wrong_answer_fails_briefly(visit):
    """Does a wrong answer typed into the page give a short ✗ (question, cause, numbers)?"""
    visit.require("wrong")
    text = visit.failed
    lines = _lines(text)
    assert visit.failed_error, "a failed check must be an error output, or nbgrader scores it"
    assert lines and lines[0].startswith("✗"), (
        f"after typing\n{visit.wrong_code}\nthe page shows\n{text}"
    )
    assert "not answered" not in text
    assert not _traceback_in(text), text
    assert len(lines) <= MAX_LINES, text


@in_browser
def test_typed_answer_passes_in_one_line(visit):
    """Does the correct answer typed through the page make its visible test print one ✓ line?"""
    visit.require("right")
    lines = _lines(visit.passed)
    assert not visit.passed_error, visit.passed
    assert len(lines) == 1 and lines[0].startswith("✓") and "passed" in lines[0], visit.passed


@in_browser
def test_validate_dialog_lists_the_unanswered_checks_briefly(visit):
    """Does Validate list each question still to do in a few plain lines, and not the answered one?"""
    visit.require("validate")
    text = visit.dialog
    assert text.startswith("Validation Results"), text
    assert not _traceback_in(text), text
    blocks = text.split("The following cell failed:")[1:]
    for i in visit.tests:
        source = visit.nb.cells[i].source.strip()
        listed = [b for b in blocks if source in b]
        if re.search(rf"\b({'|'.join(visit.answered_names)})\b", source):
            assert not listed, f"cell {i} ({source!r}) still fails after its answer:\n{text}"
        else:
            assert listed, f"cell {i} ({source!r}) is not listed as failing:\n{text}"
            message = listed[0].replace(source, "", 1)
            assert "not answered yet" in message, message
            assert len(_lines(message)) <= MAX_LINES, message


@in_browser
def test_solved_notebook_passes_and_draws_inline(visit):
    """Answered with the solutions, does Run All give only ✓ lines and inline figures?"""
    if not _draws(visit.nb):
        pytest.skip("this notebook draws no figure")
    visit.require("solved")
    not_run = [i for i in visit.code_cells if not re.search(r"\[\d+\]", visit.solved_prompts[i])]
    assert not not_run, f"cells that did not run: {not_run}"
    assert not visit.solved_errors, {i: visit.solved[i] for i in visit.solved_errors}
    for i in visit.tests:
        lines = _lines(visit.solved[i])
        assert lines and all(
            line.startswith("✓") or line.startswith(" ") for line in visit.solved[i].splitlines()
        ), f"cell {i}: {visit.nb.cells[i].source!r} shows\n{visit.solved[i]}"
    shown = {i: t for i, t in visit.solved.items() if _traceback_in(t)}
    assert not shown, shown
    # Every figure the kernel produced is on the page as a real picture.
    assert len(visit.rendered_images) == visit.saved_images
    assert all(w > 100 and h > 100 for w, h in visit.rendered_images), visit.rendered_images
    assert visit.rendered_images, "the notebook draws, but no figure rendered inline"


@in_browser
def test_visit_takes_well_under_a_minute_per_step(visit):
    """Is each step quick enough that the whole browser suite stays within a few minutes?"""
    visit.require("validate")
    slow = {k: s for k, s in visit.seconds.items() if s > 90}
    assert not slow, visit.seconds


@in_browser
def test_screenshots_saved(visit):
    """Are the four states saved as screenshots for this notebook?"""
    visit.require("validate")
    for state in ("not-answered", "failed", "passed", "validate"):
        shot = ARTIFACTS / f"{_label(visit.path)}-{state}.png"
        assert shot.exists() and shot.stat().st_size > 10_000, shot


def test_readme_screenshots_exist():
    """Is every screenshot the README shows committed under docs/screenshots/?"""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for ref in re.findall(r"docs/screenshots/[\w.\-]+\.png", readme):
        path = ROOT / ref
        assert path.exists(), f"README shows {ref}, which is missing"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", ref
