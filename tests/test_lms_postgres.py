"""The roster and the grade exports on a PostgreSQL gradebook (a real server started on
loopback by the test suite, fixture `postgres_server` of tests/pg_server.py): the same
files, byte for byte, as on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.lms.export import export
from autograder.lms.roster import gradebook, import_roster, load
from tests.conftest import Course
from tests.test_lms import ROSTER, A, graded_by_hand_free_gradebook


def exported(course: Course, tmp_path: Path) -> dict[str, bytes]:
    tmp_path.mkdir()
    (tmp_path / "roster.csv").write_text(ROSTER)
    import_roster(course_dir=course.root, path=tmp_path / "roster.csv")
    graded_by_hand_free_gradebook(course)
    files = {}
    for lms in ("canvas", "moodle", "blackboard"):
        written, _ = export(
            course_dir=course.root, lms=lms, out_dir=tmp_path / lms, ids={A: "4567"}
        )
        for path in written:
            if "worksheet" not in path.name:  # it carries the time of the export
                files[f"{lms}/{path.name}"] = path.read_bytes()
    return files


@pytest.mark.slow
def test_roster_and_exports_on_postgresql_match_sqlite(postgres_server, tmp_path):
    url = postgres_server.new_database("lms")
    on_pg = Course.create(tmp_path / "pg", [A])
    with (on_pg.root / "nbgrader_config.py").open("a") as fh:
        fh.write(f"\nc.CourseDirectory.db_url = {url!r}\n")
    on_sqlite = Course.create(tmp_path / "sqlite", [A])

    got = exported(on_pg, tmp_path / "pg-out")
    assert not (on_pg.root / "gradebook.db").exists()  # everything went to the server
    with gradebook(on_pg.root, create=False) as gb:
        assert gb.db.bind.url.render_as_string(hide_password=False) == url
        assert {(s.id, s.lms_user_id) for s in gb.students} == {
            ("alice", "12345"),
            ("bob", "67890"),
        }
    assert [s.section for s in load(on_pg.root).students] == ["B2", "A1"]
    assert got == exported(on_sqlite, tmp_path / "sqlite-out")
    assert len(got) == 6
