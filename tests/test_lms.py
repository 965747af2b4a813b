"""The LMS loop: downloads from Canvas, Moodle and Blackboard collected into nbgrader's
layout, the roster in the gradebook, grades exported in each LMS's import format, and the
feedback packed for return.

Archives are real zips in each LMS's naming, built here from the sample class's
notebooks; timestamps are read back through nbgrader's own CourseDirectory, grades
through nbgrader's Gradebook, and the slow part grades through real nbgrader.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from autograder import course as course_mod
from autograder.cli import main
from autograder.core.nbgrader_io import ensure_assignment, in_dir, load_config, nbgrader_api
from autograder.core.submissions import submission_problem
from autograder.lms import layouts
from autograder.lms.collect import CollectError, collect, read_manifest
from autograder.lms.export import export
from autograder.lms.feedback import archive, regenerate
from autograder.lms.roster import RosterError, import_roster, load, read_csv
from tests.conftest import Course

ROOT = Path(__file__).resolve().parents[1]
A = "01_derivatives"
NB = f"{A}.ipynb"
SAMPLE = ROOT / "examples" / "sample_class"


def sample(student: str) -> bytes:
    return (SAMPLE / student / A / NB).read_bytes()


def make_zip(path: Path, members: dict[str, bytes], when=(2026, 11, 21, 9, 15, 0)) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=when), data)
    return path


def nbgrader_timestamp(root: Path, student: str) -> datetime:
    """What nbgrader itself reads as the submission's time (autograde's own call)."""
    from nbgrader.coursedir import CourseDirectory

    cd = CourseDirectory(config=load_config(root))
    return cd.get_existing_timestamp(str(root / "submitted" / student / A))


ROSTER = """\
Student ID,First Name,Last Name,Email,LMS ID,Login,Section
alice,Alice,Liddell,alice@example.edu,12345,aliddell,A1
bob,Bob,Builder,bob@example.edu,67890,bbuilder,B2
"""


@pytest.fixture
def course(tmp_path) -> Course:
    return Course.create(tmp_path, [A])


# --- file names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "lms", "lms_id", "file_name"),
    [
        (layouts.EXAMPLES["blackboard"], "blackboard", "jdoe7", NB),
        ("Assignment_1_Derivatives_jdoe7_attempt_2026-11-20-14-05-45_01_derivatives.ipynb",
         "blackboard", "jdoe7", NB),
        (layouts.EXAMPLES["canvas"], "canvas", "12345", NB),
        ("doejane_late_12345_678901_01_derivatives-1.ipynb", "canvas", "12345",
         "01_derivatives-1.ipynb"),
        ("doejane_LATE_12345_678901_01_derivatives.ipynb", "canvas", "12345", NB),
        (layouts.EXAMPLES["moodle"], "moodle", "12345", NB),
        ("Jane Doe_12345_assignsubmission_file_01_derivatives.ipynb", "moodle", "12345", NB),
        ("Jane Doe_12345_assignsubmission_file/01_derivatives.ipynb", "moodle", "12345", NB),
        ("download/José Núñez_777_assignsubmission_file_/sub/01_derivatives.ipynb", "moodle",
         "777", NB),
    ],
)  # fmt: skip
def test_layouts_read_each_lms_name(name, lms, lms_id, file_name):
    found = layouts.parse(name)
    assert isinstance(found, layouts.Found), found
    assert (found.lms, found.lms_id, found.file_name) == (lms, lms_id, file_name)
    assert found.late == ("late" in name.lower())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20-23-59-30", datetime(2026, 11, 20, 23, 59, 30)),
        ("2026-11-20-14-05-45", datetime(2026, 11, 20, 14, 5, 45)),
        ("2026-11-20-20-30-10", datetime(2026, 11, 20, 20, 30, 10)),
    ],
)
def test_blackboard_times_are_local_times_not_offsets(text, expected):
    found = layouts.parse(f"Derivatives_jdoe7_attempt_{text}_{NB}")
    assert found.submitted_at == expected


def test_layouts_name_what_is_not_a_submission():
    receipt = layouts.parse("Derivatives_jdoe7_attempt_2026-11-20-23-59-30.txt")
    assert isinstance(receipt, layouts.Skip) and "receipt" in receipt.reason
    other = layouts.parse("notes.ipynb")
    assert isinstance(other, layouts.Skip) and "matches no LMS download layout" in other.reason
    bad_time = layouts.parse(f"Derivatives_jdoe7_attempt_2026-13-40-25-61-61_{NB}")
    assert isinstance(bad_time, layouts.Skip) and "impossible time" in bad_time.reason
    assert layouts.parse("__MACOSX/._x.ipynb") is None
    assert layouts.original_name("01_derivatives-2.ipynb", {NB}) == NB
    assert layouts.original_name("01_derivatives (1).ipynb", {NB}) == NB
    assert layouts.original_name("02_chain_rule-1.ipynb", {NB}) == "02_chain_rule-1.ipynb"


# --- finding 1: Blackboard times, skipped files, no poisoned archive ---------------------------


def test_blackboard_download_times_reach_nbgrader_exactly(course, tmp_path):
    """Every time nbgrader used to misread (as an offset, or not at all) is read as the
    local time the name says, by nbgrader's own timestamp reader; the later attempt wins."""
    download = make_zip(
        tmp_path / "gradebook_Derivatives.zip",
        {
            f"Derivatives_alice_attempt_2026-11-20-23-59-30_{NB}": sample("alice"),
            "Derivatives_alice_attempt_2026-11-20-23-59-30.txt": b"Name: Alice Liddell",
            f"Derivatives_bob_attempt_2026-11-20-14-05-45_{NB}": sample("alice"),
            f"Derivatives_bob_attempt_2026-11-20-20-30-10_{NB}": sample("bob"),
            "Derivatives_bob_attempt_2026-11-20-20-30-10.txt": b"Name: Bob Builder",
        },
    )
    result = collect(course_dir=course.root, assignment=A, download=download)
    assert sorted(result.students) == ["alice", "bob"]
    assert nbgrader_timestamp(course.root, "alice") == datetime(2026, 11, 20, 23, 59, 30)
    assert nbgrader_timestamp(course.root, "bob") == datetime(2026, 11, 20, 20, 30, 10)
    assert (course.root / "submitted" / "bob" / A / NB).read_bytes() == sample("bob")
    skipped = {s.path: s.reason for s in result.skipped}
    assert "earlier attempt of bob" in skipped[f"Derivatives_bob_attempt_2026-11-20-14-05-45_{NB}"]
    assert "receipt" in skipped["Derivatives_bob_attempt_2026-11-20-20-30-10.txt"]
    summary = result.summary()
    assert "2 student(s) collected" in summary and "3 file(s) skipped" in summary
    # nbgrader's downloaded/ is never used: nothing of the download stays behind
    assert not (course.root / "downloaded").exists()
    # collecting the earlier download again does not replace the later attempt
    older = make_zip(
        tmp_path / "older.zip", {f"Derivatives_bob_attempt_2026-11-19-10-00-00_{NB}": b"{}"}
    )
    with pytest.raises(CollectError, match="already holds a later attempt"):
        collect(course_dir=course.root, assignment=A, download=older)
    assert (course.root / "submitted" / "bob" / A / NB).read_bytes() == sample("bob")


def test_a_broken_download_leaves_nothing_behind(course, tmp_path, capsys):
    # a zip left unreadable in nbgrader's downloaded/ by an earlier tool does not matter
    stale = course.root / "downloaded" / A / "archive"
    stale.mkdir(parents=True)
    (stale / "old.zip").write_bytes(b"PK\x03\x04 truncated")
    broken = tmp_path / "broken.zip"
    good = make_zip(
        tmp_path / "good.zip",
        {f"Derivatives_alice_attempt_2026-11-20-23-59-30_{NB}": sample("alice")},
    )
    broken.write_bytes(good.read_bytes()[:200])
    status = main(["--course-dir", str(course.root), "collect", A, str(broken)])
    err = capsys.readouterr().err
    assert status == 2
    assert "broken.zip" in err and "not a readable zip archive" in err
    assert not (course.root / "submitted").exists()
    # the next run, with a good download, is not affected by either
    assert main(["--course-dir", str(course.root), "collect", A, str(good)]) == 0
    assert "1 student(s) collected" in capsys.readouterr().out
    assert nbgrader_timestamp(course.root, "alice") == datetime(2026, 11, 20, 23, 59, 30)


def test_a_download_that_yields_nothing_exits_non_zero_naming_every_file(course, tmp_path, capsys):
    download = make_zip(
        tmp_path / "wrong.zip",
        {
            "report.pdf": b"%PDF",
            "Derivatives_alice_attempt_2026-11-20-23-59-30.txt": b"receipt",
            "doejane_12345_678901_notes.pdf": b"%PDF",
        },
    )
    with zipfile.ZipFile(download, "a") as zf:
        zf.writestr(f"X_.._attempt_2026-11-20-23-59-30_{NB}", sample("alice"))
    status = main(["--course-dir", str(course.root), "collect", A, str(download)])
    err = capsys.readouterr().err
    assert status == 2
    assert "nothing collected" in err and "0 student(s) collected" in err
    assert "4 file(s) skipped" in err
    assert "'..' cannot name a student's folder" in err
    assert "skipped report.pdf: the name matches no LMS download layout" in err
    assert "skipped doejane_12345_678901_notes.pdf: not a notebook (.pdf)" in err
    assert "receipt" in err
    assert not (course.root / "submitted").exists()


def test_grade_refuses_a_download_that_yields_nothing(course, tmp_path, capsys):
    download = make_zip(tmp_path / "empty.zip", {"readme.txt": b"nothing"})
    status = main(["--course-dir", str(course.root), "grade", A, "--submissions", str(download)])
    assert status == 2
    assert "nothing collected" in capsys.readouterr().err


@pytest.mark.slow  # a grading run's start-up: ~20 s on a loaded 2-core machine
def test_grading_nothing_is_not_success(course, capsys):
    status = main(["--course-dir", str(course.root), "grade", A])
    out = capsys.readouterr().out
    assert status == 1
    assert "0 graded, 0 ungradable" in out and "nothing graded" in out


@pytest.mark.parametrize(
    ("stamp", "problem"),
    [
        ("2026-11-20-23-59-30", True),  # nbgrader: "Invalid timestamp string"
        ("2026-11-20-20-30-10", True),  # nbgrader: 06:00 the next day
        ("", True),
        ("tomorrow-ish", True),
        ("2026-11-20 23:59:30", False),
    ],
)
def test_a_timestamp_nbgrader_misreads_is_named(course, stamp, problem):
    """A submitted/ folder from nbgrader's own zip_collect, with the LMS's dashed time."""
    folder = course.submit("alice", A, raw=sample("alice")).parent
    (folder / "timestamp.txt").write_text(stamp + "\n")
    got = submission_problem(course.root, A, "alice")
    if problem:
        assert got[0] == "invalid_timestamp"
        assert f"timestamp.txt holds {stamp!r}, which nbgrader cannot read" in got[1]
    else:
        assert got is None


@pytest.mark.slow
def test_a_misread_timestamp_does_not_stop_the_run(course, capsys):
    folder = course.submit("alice", A, raw=sample("alice")).parent
    (folder / "timestamp.txt").write_text("2026-11-20-23-59-30\n")
    status = main(["--course-dir", str(course.root), "grade", A])
    out = capsys.readouterr().out
    assert status == 1
    assert "0 graded, 1 ungradable: alice (invalid timestamp: timestamp.txt holds" in out


def test_an_lms_download_goes_into_one_named_assignment(tmp_path):
    course = Course.create(tmp_path, [A, "02_chain_rule"])
    download = make_zip(tmp_path / "submissions.zip", {f"doejane_1_2_{NB}": sample("alice")})
    with pytest.raises(FileNotFoundError, match="LMS download, which holds one assignment"):
        course_mod.grade(
            course_dir=course.root, assignment=[A, "02_chain_rule"], submissions=download
        )
    assert not (course.root / "submitted").exists()


# --- finding 2: Canvas and Moodle layouts, matched through the roster --------------------------


def test_canvas_and_moodle_downloads_match_students_through_the_roster(course, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    import_roster(course_dir=course.root, path=roster)
    canvas = make_zip(
        tmp_path / "submissions.zip",
        {
            f"liddellalice_late_12345_900001_{A}-1.ipynb": sample("alice"),
            f"builderbob_67890_900002_{A}.ipynb": sample("bob"),
            f"strangerx_55555_900003_{A}.ipynb": sample("bob"),
        },
        when=(2026, 11, 22, 8, 0, 2),
    )
    got = collect(course_dir=course.root, assignment=A, download=canvas)
    assert sorted(got.students) == ["alice", "bob"]
    assert (course.root / "submitted" / "alice" / A / NB).read_bytes() == sample("alice")
    assert nbgrader_timestamp(course.root, "alice") == datetime(2026, 11, 22, 8, 0, 2)
    (skip,) = got.skipped
    assert skip.path.startswith("strangerx_55555") and "Canvas user id 55555" in skip.reason
    seen = read_manifest(course.root, A)
    assert seen["alice"]["late"] is True and seen["alice"]["lms"] == "canvas"
    assert "marked late by the LMS: alice\n" in got.summary()

    # Moodle numbers participants per assignment: ids unknown to the roster match by name
    moodle = make_zip(
        tmp_path / "moodle.zip",
        {
            f"Alice Liddell_4401_assignsubmission_file_/{A}.ipynb": sample("bob"),
            "Alice Liddell_4401_assignsubmission_onlinetext_/onlinetext.html": b"<p>hi</p>",
            f"Bob Builder_4402_assignsubmission_file_{A}.ipynb": sample("alice"),
        },
        when=(2026, 11, 23, 10, 0, 0),
    )
    got = collect(course_dir=course.root, assignment=A, download=moodle)
    assert sorted(got.students) == ["alice", "bob"]
    assert (course.root / "submitted" / "alice" / A / NB).read_bytes() == sample("bob")
    assert [s.reason for s in got.skipped] == ["not a notebook (.html) in moodle's layout"]
    assert read_manifest(course.root, A)["bob"]["lms_id"] == "4402"
    # an unpacked Moodle folder is recognised as a download too (grade --submissions)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(moodle) as zf:
        zf.extractall(unpacked)
    students = course_mod.import_submissions(
        course_dir=course.root, assignment=A, submissions=unpacked
    )
    assert students == ["alice", "bob"]


def test_blackboard_usernames_with_underscores_are_split_by_the_roster(course, tmp_path):
    from autograder.lms.roster import Roster, Student

    roster = Roster([Student("alice", "Alice", "Liddell", login="a_liddell")])
    download = make_zip(
        tmp_path / "bb.zip",
        {
            f"Derivatives_a_liddell_attempt_2026-11-20-23-59-30_{NB}": sample("alice"),
            f"Derivatives_liddell_attempt_2026-11-20-23-59-30_{NB}": sample("alice"),
        },
    )
    got = collect(course_dir=course.root, assignment=A, download=download, roster=roster)
    assert list(got.students) == ["alice"]
    (skip,) = got.skipped
    assert skip.reason == "no student in the roster with Blackboard username 'liddell'"


def test_files_of_one_canvas_submission_stay_together(course, tmp_path):
    """Canvas's names carry no time: the files of one submission (one submission id)
    are one attempt, whatever their times in the archive; it is as late as its last."""
    path = tmp_path / "submissions.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            zipfile.ZipInfo(f"doejane_12345_900001_{NB}", (2026, 11, 20, 10, 0, 0)),
            sample("alice"),
        )
        zf.writestr(
            zipfile.ZipInfo("doejane_12345_900001_scratch.ipynb", (2026, 11, 20, 10, 0, 6)),
            sample("bob"),
        )
    got = collect(course_dir=course.root, assignment=A, download=path)
    assert got.skipped == []
    folder = course.root / "submitted" / "12345" / A
    assert sorted(p.name for p in folder.iterdir()) == [NB, "scratch.ipynb", "timestamp.txt"]
    assert nbgrader_timestamp(course.root, "12345") == datetime(2026, 11, 20, 10, 0, 6)
    assert "no roster imported" in got.summary()


# --- roster ------------------------------------------------------------------------------------


def test_roster_round_trip_through_the_gradebook(course, tmp_path, capsys):
    path = tmp_path / "roster.csv"
    path.write_bytes(("\ufeff" + ROSTER).encode())  # as a spreadsheet saves it
    assert main(["--course-dir", str(course.root), "roster", "import", str(path)]) == 0
    assert "2 student(s) imported" in capsys.readouterr().out
    api = nbgrader_api(course.root)
    with in_dir(course.root):
        gb = api.gradebook
        try:
            got = {s.id: (s.first_name, s.last_name, s.email, s.lms_user_id) for s in gb.students}
        finally:
            gb.close()
    assert got == {
        "alice": ("Alice", "Liddell", "alice@example.edu", "12345"),
        "bob": ("Bob", "Builder", "bob@example.edu", "67890"),
    }
    roster = load(course.root)
    assert [(s.student_id, s.login, s.section) for s in roster.students] == [
        ("bob", "bbuilder", "B2"),
        ("alice", "aliddell", "A1"),
    ]
    # a second import updates the students it names and keeps the others
    path.write_text(
        "student_id,first_name,last_name,lms_id,section\nalice,Alicia,Liddell,12345,A3\n"
    )
    imported, kept = import_roster(course_dir=course.root, path=path)
    assert [s.student_id for s in imported] == ["alice"] and kept == ["bob"]
    again = load(course.root)
    assert again.get("alice").first_name == "Alicia" and again.get("alice").section == "A3"
    assert again.get("bob").email == "bob@example.edu"


def test_a_bad_roster_names_each_line_and_imports_nothing(course, tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(
        "student_id,first_name,last_name,lms_id\n"
        "alice,Alice,Liddell,1\n"
        "alice,Alice,Again,2\n"
        "bob/../x,Bob,Builder,3\n"
        ",No,Id,4\n"
        "chen,Chen,Wu,1\n"
    )
    with pytest.raises(RosterError) as info:
        import_roster(course_dir=course.root, path=path)
    assert info.value.problems == [
        "line 3: student id 'alice' already on line 2",
        "line 4: student id 'bob/../x' is not usable as a folder name "
        "(letters, digits, and . _ @ + - after the first character)",
        "line 5: no student id",
        "line 6: LMS id '1' already on line 2",
    ]
    assert not load(course.root)
    path.write_text("name,email\nAlice,a@x\n")
    with pytest.raises(RosterError, match="no column student_id, first_name, last_name"):
        read_csv(path)


# --- finding 10: grade export -------------------------------------------------------------------


def graded_by_hand_free_gradebook(course: Course) -> dict[str, float]:
    """A gradebook where alice scored every automatic point and bob none, entered
    through nbgrader's Gradebook API (no kernels): grade id -> points."""
    points = course.auto_cells(A)
    api = nbgrader_api(course.root)
    with in_dir(course.root):
        ensure_assignment(api, course.root, A)
        gb = api.gradebook
        try:
            for student, full in (("alice", True), ("bob", False)):
                gb.add_submission(A, student)
                for gid, pts in points.items():
                    g = gb.find_grade(gid, A.removesuffix(".ipynb"), A, student)
                    g.auto_score = pts if full else 0.0
                gb.db.commit()
        finally:
            gb.close()
    return points


def rows_of(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_exports_have_each_lms_columns(course, tmp_path):
    (tmp_path / "roster.csv").write_text(ROSTER)
    import_roster(course_dir=course.root, path=tmp_path / "roster.csv")
    points = graded_by_hand_free_gradebook(course)
    auto = sum(points.values())
    total = auto + course.manual_points(A)
    out = tmp_path / "out"

    written, notes = export(course_dir=course.root, lms="canvas", out_dir=out, ids={A: "4567"})
    assert [p.name for p in written] == ["grades_by_question.csv", "canvas_grades.csv"]
    rows = rows_of(out / "canvas_grades.csv")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", f"{A} (4567)"]
    assert rows[1] == ["Points Possible", "", "", "", "", f"{total:g}"]
    assert rows[2:] == [
        ["Builder, Bob", "67890", "", "bbuilder", "B2", "0"],
        ["Liddell, Alice", "12345", "", "aliddell", "A1", f"{auto:g}"],
    ]
    assert any("points still to grade by hand" in n and "alice" in n for n in notes)

    by_q = rows_of(out / "grades_by_question.csv")
    header = by_q[0]
    assert header[:7] == ["student_id", "first_name", "last_name", "email", "lms_id", "section", A]
    questions = header[7:]
    assert questions[0] == f"{A}/q1-1-forward"
    assert {q.split("/", 1)[1] for q in questions} == {*points, "q4-3-explain"}
    assert all(q.startswith(f"{A}/") for q in questions)
    assert by_q[1][0] == "Points Possible" and by_q[1][6] == f"{total:g}"
    alice = next(r for r in by_q if r[0] == "alice")
    assert alice[:7] == [
        "alice",
        "Alice",
        "Liddell",
        "alice@example.edu",
        "12345",
        "A1",
        f"{auto:g}",
    ]
    scores = dict(zip(questions, alice[7:], strict=True))
    assert scores[f"{A}/q2-gradient"] == f"{points['q2-gradient']:g}"
    assert scores[f"{A}/q4-3-explain"] == ""  # not graded by hand yet

    # Alice's Moodle download named her by this assignment's participant id, 4401
    moodle = make_zip(
        tmp_path / "moodle.zip",
        {f"Alice Liddell_4401_assignsubmission_file/{NB}": sample("alice")},
        when=(2026, 11, 20, 23, 59, 30),
    )
    collect(course_dir=course.root, assignment=A, download=moodle)
    export(course_dir=course.root, lms="moodle", out_dir=out)
    rows = rows_of(out / "moodle_grades.csv")
    assert rows[0] == ["First name", "Last name", "ID number", "Email address", A]
    assert rows[1:] == [
        ["Bob", "Builder", "bob", "bob@example.edu", "0"],
        ["Alice", "Liddell", "alice", "alice@example.edu", f"{auto:g}"],
    ]
    sheet = rows_of(out / f"moodle_worksheet_{A}.csv")
    assert sheet[0] == [
        "Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade",
        "Grade can be changed", "Last modified (submission)", "Last modified (grade)",
        "Feedback comments",
    ]  # fmt: skip
    assert [r[:6] for r in sheet[1:]] == [
        ["Participant 67890", "Bob Builder", "bob@example.edu", "Submitted for grading - Graded",
         "0", f"{total:g}"],
        ["Participant 4401", "Alice Liddell", "alice@example.edu",
         "Submitted for grading - Graded", f"{auto:g}", f"{total:g}"],
    ]  # fmt: skip
    moodle_date = "%A, %d %B %Y, %I:%M %p"  # what Moodle writes, and reads back
    assert sheet[2][7] == "Friday, 20 November 2026, 11:59 PM"
    assert sheet[1][7] == "-"  # Bob's submission was not collected here
    graded_at = datetime.strptime(sheet[1][8], moodle_date)
    assert abs((datetime.now() - graded_at).total_seconds()) < 600

    written, notes = export(course_dir=course.root, lms="blackboard", out_dir=out)
    rows = rows_of(out / "blackboard_grades.csv")
    assert rows[0] == ["Last Name", "First Name", "Username", f"{A} [Total Pts: {total:g}]"]
    assert rows[1:] == [
        ["Builder", "Bob", "bbuilder", "0"],
        ["Liddell", "Alice", "aliddell", f"{auto:g}"],
    ]
    assert any(f"no blackboard id given for {A}" in n for n in notes)
    text = (out / "blackboard_grades.csv").read_text()
    assert text.startswith('"Last Name","First Name","Username",')
    export(course_dir=course.root, lms="blackboard", out_dir=out, ids={A: "_123_1"})
    assert rows_of(out / "blackboard_grades.csv")[0][3] == f"{A} [Total Pts: {total:g}] |_123_1"

    with pytest.raises(FileNotFoundError, match="not in the gradebook: 09_nothing"):
        export(course_dir=course.root, lms="csv", out_dir=out, assignments=["09_nothing"])


def test_grades_csv_names_questions_with_their_assignment(tmp_path):
    outcomes = [
        course_mod.Outcome("ann", "01_derivatives", "graded", score=1, max_score=2,
                           cells={"q3-1-analytic": (1.0, 1.0)}),
        course_mod.Outcome("ann", "02_chain_rule", "graded", score=0, max_score=1,
                           cells={"q3-1-analytic": (0.0, 1.0)}),
    ]  # fmt: skip
    path = course_mod.write_csv(course_dir=tmp_path, outcomes=outcomes)
    rows = rows_of(path)
    assert rows[0][-2:] == ["01_derivatives/q3-1-analytic", "02_chain_rule/q3-1-analytic"]
    assert rows[1][-2:] == ["1", ""] and rows[2][-2:] == ["", "0"]


# --- the whole loop, graded by real nbgrader -----------------------------------------------------


@pytest.fixture(scope="module")
def graded_from_lms(tmp_path_factory):
    """Alice (every answer right) handed in through Blackboard, twice, at times nbgrader
    used to misread; Bob (blank) through Canvas, late: collected, and graded by real
    nbgrader in one run."""
    base = tmp_path_factory.mktemp("lms")
    course = Course.create(base, [A])
    (base / "roster.csv").write_text(ROSTER)
    import_roster(course_dir=course.root, path=base / "roster.csv")
    blackboard = make_zip(
        base / "gradebook_Derivatives.zip",
        {
            f"Derivatives_aliddell_attempt_2026-11-20-14-05-45_{NB}": sample("bob"),
            f"Derivatives_aliddell_attempt_2026-11-20-23-59-30_{NB}": sample("alice"),
            "Derivatives_aliddell_attempt_2026-11-20-23-59-30.txt": b"Name: Alice Liddell",
        },
    )
    collect(course_dir=course.root, assignment=A, download=blackboard)
    canvas = make_zip(
        base / "submissions.zip",
        {f"builderbob_late_67890_900002_{NB}": sample("bob")},
        when=(2026, 11, 21, 20, 30, 10),
    )
    outcomes = course.grade(A, submissions=canvas, jobs=2)
    return course, outcomes


@pytest.mark.slow
def test_lms_downloads_are_graded_with_their_times(graded_from_lms):
    course, outcomes = graded_from_lms
    auto = sum(course.auto_cells(A).values())
    assert {s: (o.status, o.score) for s, o in outcomes.items()} == {
        "alice": ("graded", auto),
        "bob": ("graded", 0.0),
    }
    api = nbgrader_api(course.root)
    with in_dir(course.root):
        gb = api.gradebook
        try:
            assert gb.find_submission(A, "alice").timestamp == datetime(2026, 11, 20, 23, 59, 30)
            assert gb.find_submission(A, "bob").timestamp == datetime(2026, 11, 21, 20, 30, 10)
            assert gb.find_student("alice").lms_user_id == "12345"
        finally:
            gb.close()


@pytest.mark.slow
def test_feedback_after_hand_grading_keeps_the_grades_and_packs_for_moodle(graded_from_lms, capsys):
    course, _ = graded_from_lms
    api = nbgrader_api(course.root)
    with in_dir(course.root):
        gb = api.gradebook
        try:
            g = gb.find_grade("q4-3-explain", A, A, "alice")
            g.manual_score = 1.0
            c = gb.find_comment("q4-3-explain", A, A, "alice")
            c.manual_comment = "Clear explanation of the truncation error."
            gb.db.commit()
            before = {
                (gr.name, gr.auto_score, gr.manual_score)
                for gr in gb.find_submission_notebook(A, A, "alice").grades
            }
        finally:
            gb.close()
    status = main(["--course-dir", str(course.root), "feedback", A, "--lms", "moodle"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "feedback regenerated for 2 submission(s)" in out
    html = course.feedback_html("alice", A)
    assert "Clear explanation of the truncation error." in html
    with in_dir(course.root):
        gb = api.gradebook
        try:
            after = {
                (gr.name, gr.auto_score, gr.manual_score)
                for gr in gb.find_submission_notebook(A, A, "alice").grades
            }
            assert gb.find_submission(A, "alice").score == sum(course.auto_cells(A).values()) + 1
        finally:
            gb.close()
    assert after == before

    # Moodle: the participants' folders, named as Moodle's download names them
    with zipfile.ZipFile(course.root / "export" / f"feedback_{A}_moodle.zip") as zf:
        names = sorted(zf.namelist())
        assert names == [
            f"Alice Liddell_12345_assignfeedback_file_/{A}.html",
            f"Bob Builder_67890_assignfeedback_file_/{A}.html",
        ]
        assert "Clear explanation" in zf.read(names[0]).decode()

    # Canvas: no bulk upload of feedback files, so folders per student and an index
    path, notes = archive(course_dir=course.root, assignment=A, lms="canvas")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == [
            f"builderbob_67890_bob/{A}.html",
            "index.csv",
            f"liddellalice_12345_alice/{A}.html",
        ]
        index = list(csv.DictReader(io.StringIO(zf.read("index.csv").decode())))
    auto = sum(course.auto_cells(A).values())
    assert [(r["student_id"], r["lms_id"], r["score"]) for r in index] == [
        ("alice", "12345", f"{auto + 1:g}"),
        ("bob", "67890", "0"),
    ]
    assert notes == []

    # the export now carries the hand grade
    export(course_dir=course.root, lms="canvas", out_dir=course.root / "export")
    rows = rows_of(course.root / "export" / "canvas_grades.csv")
    assert rows[3] == ["Liddell, Alice", "12345", "", "aliddell", "A1", f"{auto + 1:g}"]
    again = regenerate(course_dir=course.root, assignments=[A], students=["bob"])
    assert again.done == [(A, "bob")] and again.failed == []
    assert json.loads((course.root / ".autograder" / "lms" / f"{A}.json").read_text())["bob"][
        "late"
    ]
