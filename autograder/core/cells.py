"""The gradebook's record of an assignment's cells, and the submission's cells around it.

- :class:`SyncCells` (in place of nbgrader's ``SaveCells`` when the gradebook is prepared
  for grading): records today's source cells even when submissions exist. nbgrader
  refuses to add or remove a cell then; here a question added after release gets a grade
  row in every existing submission (scored when that submission is graded again), and a
  removed one loses its rows.
- :class:`RestoreMissingCells` (before nbgrader's ``OverwriteCells``): puts back every
  answer, test or locked cell the submission lacks, copied from the assignment as the
  gradebook knows it (answer cells as their stubs), where it stands in the source. nbgrader's
  own ``add_missing_cells`` restores a test cell only after the answer cell before it, and
  stops the whole submission with a ``KeyError`` when that is missing too. It also quiets
  nbgrader's "Attribute 'checksum' ... has changed" warning, which every test cell of every
  submission raises (the gradebook's checksum covers the hidden tests the release lacks).
- :class:`KeepHandGrades` (in place of ``SaveAutoGrades``): a cell graded by hand keeps its
  "graded" state when it is autograded again with the same answer (nbgrader marks it as
  needing grading again on every autograde). What a cell held when it was last graded is
  kept in the course's state folder (``answers/``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
from pathlib import Path

import nbformat
from nbgrader.api import Comment, Grade, MissingEntry
from nbgrader.preprocessors import GetGrades, OverwriteCells, SaveAutoGrades, SaveCells
from nbgrader.preprocessors.base import NbGraderPreprocessor
from traitlets import Unicode

RESTORED_NOTE = "Restored by the grader: this cell was missing from the submitted notebook."


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata") or {}
    nbg = meta.get("nbgrader")
    return nbg if isinstance(nbg, dict) else {}


class SyncCells(SaveCells):
    """nbgrader's SaveCells, which also adds and removes cells of a notebook that has
    submissions (see the module doc)."""

    def _create_notebook(self, nb) -> None:
        try:
            notebook = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        except MissingEntry:
            return super()._create_notebook(nb)
        if not notebook.submissions:
            return super()._create_notebook(nb)
        db = self.gradebook.db
        wanted = (
            (notebook.grade_cells, self.new_grade_cells),
            (notebook.solution_cells, self.new_solution_cells),
            (notebook.task_cells, self.new_task_cells),
        )
        for cells, keep in wanted:
            for cell in list(cells):
                if cell.name not in keep:
                    self.log.warning("cell %s removed from %s", cell.name, self.notebook_id)
                    for row in [*(cell.grades or []), *(cell.comments or [])]:
                        db.delete(row)
                    db.delete(cell)
        for cell in list(notebook.source_cells):
            if cell.name not in self.new_source_cells:
                db.delete(cell)
        db.commit()
        gb, nid, aid = self.gradebook, self.notebook_id, self.assignment_id
        for name, info in self.new_grade_cells.items():
            gb.update_or_create_grade_cell(name, nid, aid, **info)
        for name, info in self.new_solution_cells.items():
            gb.update_or_create_solution_cell(name, nid, aid, **info)
        for name, info in self.new_task_cells.items():
            gb.update_or_create_task_cell(name, nid, aid, **info)
        for name, info in self.new_source_cells.items():
            gb.update_or_create_source_cell(name, nid, aid, **info)
        db.refresh(notebook)
        for submitted in notebook.submissions:
            grades = {g.cell_id for g in submitted.grades}
            comments = {c.cell_id for c in submitted.comments}
            for cell in [*notebook.grade_cells, *notebook.task_cells]:
                if cell.id not in grades:
                    db.add(Grade(cell_id=cell.id, notebook=submitted))
            for cell in [*notebook.solution_cells, *notebook.task_cells]:
                if cell.id not in comments:
                    db.add(Comment(cell_id=cell.id, notebook=submitted))
        db.commit()
        return None


class _QuietChecksums(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            str(record.msg).startswith("Attribute '%s' for cell") and args[:1] == ("checksum",)
        )


def generated_notebook(state_dir: str | Path, assignment: str, notebook: str) -> Path:
    """Where the gradebook's preparation wrote the student version of today's source."""
    return Path(state_dir) / "generated" / assignment / f"{notebook}.ipynb"


class RestoreMissingCells(NbGraderPreprocessor):
    """Puts back the answer, test and locked cells a submission lacks (module doc)."""

    state_dir = Unicode("", help="The course's state folder (holds generated/).").tag(config=True)

    def preprocess(self, nb, resources):
        log = self.log
        if not any(isinstance(f, _QuietChecksums) for f in log.filters):
            log.addFilter(_QuietChecksums())
        info = resources["nbgrader"]
        path = generated_notebook(self.state_dir, info["assignment"], info["notebook"])
        if not self.state_dir or not path.exists():
            return nb, resources
        reference = nbformat.read(str(path), as_version=4)
        order = [c for c in reference.cells if _nbgrader(c).get("grade_id")]
        present = {_nbgrader(c).get("grade_id") for c in nb.cells}
        restored = []
        for i, cell in enumerate(order):
            meta = _nbgrader(cell)
            gid = meta["grade_id"]
            if gid in present or not (
                meta.get("grade") or meta.get("solution") or meta.get("locked")
            ):
                continue
            # before the next cell of the source that the submission has (so after the
            # prose before it), else at the end
            at = len(nb.cells)
            for after in order[i + 1 :]:
                aid = _nbgrader(after)["grade_id"]
                idx = next(
                    (k for k, c in enumerate(nb.cells) if _nbgrader(c).get("grade_id") == aid), None
                )
                if idx is not None:
                    at = idx
                    break
            new = copy.deepcopy(cell)
            if new.cell_type == "code":
                new.outputs = []
                new.execution_count = None
                if meta.get("solution"):
                    new.source = f"# {RESTORED_NOTE}\n{new.source}"
            nb.cells.insert(at, new)
            present.add(gid)
            restored.append(gid)
        if restored:
            log.info("restored missing cells: %s", ", ".join(restored))
        resources.setdefault("autograder", {})["restored"] = restored
        return nb, resources

    def preprocess_cell(self, cell, resources, index):  # pragma: no cover - not used
        return cell, resources


def answer_lookups_at_once(gb, notebook: str, assignment: str, student: str | None = None) -> None:
    """Make `gb` answer the per-cell lookups of one notebook from rows read all at once.

    nbgrader's preprocessors ask the gradebook about each cell in turn (``find_grade``,
    ``find_comment``, ``find_graded_cell``, ``find_source_cell``: one query of five or
    six joined tables each, some 50 a notebook). Here the notebook's cells (and, given
    `student`, the submission's grades and comments) are read in a few queries, and
    `gb`'s lookups for that notebook answer from them: the same rows of the same
    session. Anything else (another notebook, a name not among them) still goes to
    nbgrader's query, so a missing entry raises as before.
    """
    from nbgrader.api import (
        Assignment,
        GradeCell,
        Notebook,
        SourceCell,
        SubmittedAssignment,
        SubmittedNotebook,
        TaskCell,
    )
    from sqlalchemy.orm import joinedload

    db = gb.db

    def cells_of(model):
        return {
            c.name: c
            for c in db.query(model)
            .join(Notebook, Notebook.id == model.notebook_id)
            .join(Assignment, Assignment.id == Notebook.assignment_id)
            .filter(Notebook.name == notebook, Assignment.name == assignment)
        }

    graded = {**cells_of(TaskCell), **cells_of(GradeCell)}
    sources = cells_of(SourceCell)
    _answer(gb, "find_graded_cell", graded, (notebook, assignment))
    _answer(gb, "find_source_cell", sources, (notebook, assignment))
    if student is None:
        return

    def rows_of(model):
        out = {}
        query = (
            db.query(model)
            .options(joinedload(model.cell))
            .join(SubmittedNotebook, SubmittedNotebook.id == model.notebook_id)
            .join(Notebook, Notebook.id == SubmittedNotebook.notebook_id)
            .join(SubmittedAssignment, SubmittedAssignment.id == SubmittedNotebook.assignment_id)
            .join(Assignment, Assignment.id == SubmittedAssignment.assignment_id)
            .filter(
                Notebook.name == notebook,
                Assignment.name == assignment,
                SubmittedAssignment.student_id == student,
            )
        )
        for row in query:
            out[row.cell.name] = row
        return out

    _answer(gb, "find_grade", rows_of(Grade), (notebook, assignment, student))
    _answer(gb, "find_comment", rows_of(Comment), (notebook, assignment, student))


def _answer(gb, lookup: str, rows: dict, scope: tuple) -> None:
    query = getattr(type(gb), lookup).__get__(gb)

    def find(name, *where):
        if where == scope and name in rows:
            return rows[name]
        return query(name, *where)

    setattr(gb, lookup, find)


class OverwriteCellsAtOnce(OverwriteCells):
    """nbgrader's OverwriteCells, reading the notebook's cells from the gradebook at once
    (:func:`answer_lookups_at_once`) instead of with a query per cell."""

    def preprocess(self, nb, resources):
        self._looked_up = None
        return super().preprocess(nb, resources)

    def add_missing_grade_cells(self, nb, resources):
        self._at_once()
        return super().add_missing_grade_cells(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        self._at_once()
        return super().preprocess_cell(cell, resources, index)

    def _at_once(self) -> None:
        if self._looked_up is not self.gradebook:
            answer_lookups_at_once(self.gradebook, self.notebook_id, self.assignment_id)
            self._looked_up = self.gradebook


class GetGradesAtOnce(GetGrades):
    """nbgrader's GetGrades (the feedback's scores and comments), reading the submission's
    grades and comments at once (:func:`answer_lookups_at_once`)."""

    def preprocess(self, nb, resources):
        self._looked_up = None
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if self._looked_up is not self.gradebook:
            answer_lookups_at_once(
                self.gradebook, self.notebook_id, self.assignment_id, self.student_id
            )
            self._looked_up = self.gradebook
        return super().preprocess_cell(cell, resources, index)


def _digest(cell) -> str:
    src = cell.source if isinstance(cell.source, str) else "".join(cell.source)
    return hashlib.sha256(src.strip().encode()).hexdigest()


def answers_record(state_dir: str | Path, assignment: str, student: str, notebook: str) -> Path:
    return Path(state_dir) / "answers" / assignment / student / f"{notebook}.json"


class KeepHandGrades(SaveAutoGrades):
    """nbgrader's SaveAutoGrades, except that a cell graded by hand whose answer is the
    same as when it was last autograded is not marked as needing grading again."""

    state_dir = Unicode("", help="The course's state folder (holds answers/).").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self._record = None
        self._before: dict[str, str] = {}
        self._now: dict[str, str] = {}
        if self.state_dir:
            self._record = answers_record(
                self.state_dir, info["assignment"], info["student"], info["notebook"]
            )
            try:
                self._before = json.loads(self._record.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._before = {}
        answers = [c for c in nb.cells if _nbgrader(c).get("solution")]
        self._now = {_nbgrader(c).get("grade_id"): _digest(c) for c in answers}
        self._now["*"] = hashlib.sha256(
            "\0".join(self._now[k] for k in sorted(self._now)).encode()
        ).hexdigest()
        nb, resources = self._save_in_one_transaction(nb, resources)
        if self.state_dir:
            self._restore_saved(info)
        if self._record is not None:
            self._record.parent.mkdir(parents=True, exist_ok=True)
            self._record.write_text(json.dumps(self._now, sort_keys=True), encoding="utf-8")
        return nb, resources

    def _save_in_one_transaction(self, nb, resources):
        """SaveAutoGrades.preprocess, with the notebook's grades and comments written in one
        transaction rather than one per cell: nbgrader commits after each cell (some 25
        commits a notebook), and each commit also expires every row loaded so far, so the
        next cell's lookups query them again. A notebook's scores now land all together or
        not at all."""
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        self.notebook_id = info["notebook"]
        self.assignment_id = info["assignment"]
        self.student_id = info["student"]
        self.db_url = info["db_url"]
        self.gradebook = Gradebook(self.db_url)
        with self.gradebook:
            answer_lookups_at_once(
                self.gradebook, self.notebook_id, self.assignment_id, self.student_id
            )
            db = self.gradebook.db
            db.commit = db.flush  # what SaveAutoGrades' per-cell commits do here
            try:
                nb, resources = super(SaveAutoGrades, self).preprocess(nb, resources)
            finally:
                del db.commit
            db.commit()
        return nb, resources

    def _restore_saved(self, info) -> None:
        """Put back the hand grades kept when this submission was last removed from the
        gradebook (:func:`~.nbgrader_io.save_hand_grades`), if its answers are the same."""
        from nbgrader.api import Gradebook

        path = Path(self.state_dir) / "hand_grades" / info["assignment"] / f"{info['student']}.json"
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        cells = saved.get(info["notebook"])
        if not cells:
            return
        with Gradebook(self.db_url) as gb:
            for gid, kept in cells.items():
                key = gid if gid in self._now else "*"
                if self._before.get(key) != self._now.get(key):
                    continue  # another answer: graded afresh
                with contextlib.suppress(MissingEntry):
                    g = gb.find_grade(gid, self.notebook_id, self.assignment_id, self.student_id)
                    g.manual_score = kept.get("manual_score")
                    g.extra_credit = kept.get("extra_credit")
                    g.needs_manual_grade = False
                with contextlib.suppress(MissingEntry):
                    if kept.get("manual_comment"):
                        c = gb.find_comment(
                            gid, self.notebook_id, self.assignment_id, self.student_id
                        )
                        c.manual_comment = kept["manual_comment"]
            gb.db.commit()
        del saved[info["notebook"]]
        if saved:
            path.write_text(json.dumps(saved, indent=1, sort_keys=True), encoding="utf-8")
        else:
            path.unlink()

    def _add_score(self, cell, resources) -> None:
        gid = cell.metadata["nbgrader"]["grade_id"]
        grade = self.gradebook.find_grade(
            gid, self.notebook_id, self.assignment_id, self.student_id
        )
        hand_graded = grade.manual_score is not None and not grade.needs_manual_grade
        old_auto = grade.auto_score
        super()._add_score(cell, resources)
        # a written answer is judged on itself; a test cell on all the answers
        key = gid if _nbgrader(cell).get("solution") else "*"
        same_answer = key in self._before and self._before.get(key) == self._now.get(key)
        if hand_graded and same_answer and grade.auto_score == old_auto:
            grade.needs_manual_grade = False
            self.gradebook.db.commit()
