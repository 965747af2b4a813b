"""The course's preparation for grading, made once by the coordinator and carried to each
Dask worker (see :mod:`.distributed`).

Grading needs the gradebook to know each assignment's cells and the generated student
version of today's source (``.autograder/generated/``: what missing cells are restored
from and tampering is judged against), both made by
:func:`~autograder.core.nbgrader_io.ensure_assignment` (nbgrader's generate_assignment).
The coordinator has made them for its own gradebook; a worker gets a copy instead of
making them again: the generated files, and a SQLite gradebook holding only the course
and the assignments' rows, copied table by table from the coordinator's gradebook
(SQLite or PostgreSQL), submissions and students left out.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

GRADEBOOK = "gradebook.db"  # the worker copy's gradebook, relative to its root


def assignment_rows(gb, assignments: list[str]) -> list[tuple[str, list[dict]]]:
    """The rows of nbgrader's tables (name, rows as dicts, in an order that inserts)
    recording the course and its `assignments` in gradebook `gb`: the assignments, their
    notebooks and every cell nbgrader keeps for them."""
    from nbgrader.api import Base
    from sqlalchemy import select

    tables = Base.metadata.tables

    def rows(name: str, column: str, values, *also) -> list[dict]:
        table = tables[name]
        values = list(values)
        if not values:
            return []
        found = gb.db.execute(select(table).where(table.c[column].in_(values), *also))
        return [dict(row._mapping) for row in found]

    course = rows("course", "id", [gb.course_id])
    assignment = rows(
        "assignment", "name", assignments, tables["assignment"].c.course_id == gb.course_id
    )
    notebook = rows("notebook", "assignment_id", [row["id"] for row in assignment])
    notebooks = [row["id"] for row in notebook]
    base_cell = rows("base_cell", "notebook_id", notebooks)
    cells = [row["id"] for row in base_cell]
    return [
        ("course", course),
        ("assignment", assignment),
        ("notebook", notebook),
        ("base_cell", base_cell),
        *(
            (name, rows(name, "id", cells))
            for name in ("grade_cells", "solution_cells", "task_cells")
        ),
        ("source_cell", rows("source_cell", "notebook_id", notebooks)),
    ]


def gradebook_bytes(api, assignments: list[str]) -> bytes:
    """A SQLite gradebook knowing the course and `assignments` as `api`'s gradebook does
    (run in the course directory: its URL may be relative), as the file's bytes.

    nbgrader's own schema, and its alembic version read from the course's gradebook (a
    gradebook nbgrader creates asks the `alembic` command for it: seconds).
    """
    from nbgrader.api import Base
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    with api.gradebook as gb:
        version = gb.db.execute(text("SELECT version_num FROM alembic_version")).scalar()
        tables = assignment_rows(gb, assignments)
    with tempfile.TemporaryDirectory(prefix="autograder-gradebook-") as tmp:
        path = Path(tmp) / GRADEBOOK
        engine = create_engine(f"sqlite:///{path}", future=True)
        try:
            Base.metadata.create_all(bind=engine)
            with Session(engine) as session:
                session.execute(
                    text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
                )
                if version:
                    session.execute(
                        text("INSERT INTO alembic_version (version_num) VALUES (:v)"),
                        {"v": version},
                    )
                for name, rows in tables:
                    if rows:
                        session.execute(Base.metadata.tables[name].insert(), rows)
                session.commit()
        finally:
            engine.dispose()
        return path.read_bytes()


def prepared_files(api, course_dir: Path, assignments: list[str]) -> dict[str, bytes]:
    """What a worker's course copy needs besides the course's files (see the module doc),
    by relative path: the gradebook, and each assignment's generated files and the
    digest of the source they were made from. Each assignment is prepared here first
    (:func:`~autograder.core.nbgrader_io.ensure_assignment`: nothing to do when it
    already was, as by a grading run's plan)."""
    from ..core.nbgrader_io import STATE_DIR, ensure_assignment, in_dir
    from . import gradebook

    course_dir = Path(course_dir)
    gradebook.serialize_sqlite()
    files: dict[str, bytes] = {}
    with in_dir(course_dir):
        for assignment in assignments:
            ensure_assignment(api, course_dir, assignment)
        files[GRADEBOOK] = gradebook_bytes(api, assignments)
    generated = course_dir / STATE_DIR / "generated"
    for assignment in assignments:
        stamp = generated / f"{assignment}.source-digest"
        for path in [stamp, *sorted((generated / assignment).rglob("*"))]:
            if path.is_file() and ".ipynb_checkpoints" not in path.parts:
                files[str(path.relative_to(course_dir))] = path.read_bytes()
    return files
