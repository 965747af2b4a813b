"""Grading on a real Dask cluster started here on loopback: a `dask scheduler` and
`dask worker` processes, each worker in a directory of its own.

The grading workers see no course: each runs in a mount namespace of its own where
pytest's temporary folders (every course these tests build) and this repository's
source/, release/ and examples/ are covered by an empty tmpfs, so whatever they grade
with came through Dask. A third worker runs without the capability to make namespaces
(CAP_SYS_ADMIN dropped by `setpriv`, as in a container that denies it): it lacks kernel
sandbox primitives the coordinator has, must say so and get no submission.

Scores must be those of a local run: the sample class graded on the cluster into a
PostgreSQL gradebook against the same class graded locally into SQLite; the simulated
students' corpus against each one's expected points, with one Dask worker SIGKILLed
mid-run (every submission recorded once, none lost).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from autograder import course as course_mod
from autograder.batch import distributed as dist
from autograder.batch import executor as executor_mod
from autograder.batch import processes
from autograder.core.nbgrader_io import in_dir, nbgrader_api
from tests.conftest import ROOT, Course
from tests.students import corpora

SAMPLE = ROOT / "examples" / "sample_class"
DASK = Path(sys.executable).parent / "dask"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process serving port {port} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Cluster:
    """A scheduler and named workers, each a process of ours."""

    def __init__(self, base: Path, hidden: list[Path]):
        self.base = base
        self.hidden = [str(p) for p in hidden if p.exists()]
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.dirs: dict[str, Path] = {}
        self.isolated = os.geteuid() == 0 and shutil.which("unshare") is not None

    def _spawn(self, name: str, argv: list[str], *, unfit: bool = False) -> None:
        cwd = self.base / name
        cwd.mkdir()
        env = dict(os.environ, HOME=str(cwd))
        if unfit:
            argv = ["setpriv", "--bounding-set", "-sys_admin", "--", *argv]
        if self.isolated and name != "scheduler":
            # A mount namespace of its own where the courses are covered by empty tmpfs.
            mounts = " && ".join(f"mount -t tmpfs -o ro,size=64k tmpfs {p!r}" for p in self.hidden)
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                f'{mounts or "true"} && exec "$@"',
                "sh",
                *argv,
            ]
        with open(cwd / "log.txt", "wb") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=processes.die_with_parent,  # none left behind if pytest dies
            )
        self.dirs[name] = cwd

    def start_scheduler(self) -> None:
        self._spawn(
            "scheduler",
            [
                str(DASK),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dashboard-address",
                f"127.0.0.1:{_free_port()}",
                "--no-show",
            ],
        )
        _wait_port(self.port, self.procs["scheduler"])

    def start_worker(self, name: str, *, nthreads: int = 2, unfit: bool = False) -> None:
        self._spawn(
            name,
            [
                str(DASK),
                "worker",
                self.address,
                "--name",
                name,
                "--nthreads",
                str(nthreads),
                "--no-nanny",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--memory-limit",
                "0",
                "--local-directory",
                str(self.base / name),
            ],
            unfit=unfit,
        )

    def wait_workers(self, names: list[str], timeout: float = 120) -> dict[str, str]:
        """name -> address, once every named worker has joined."""
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            deadline = time.monotonic() + timeout
            while True:
                found = {
                    info["name"]: addr
                    for addr, info in client.scheduler_info(n_workers=-1)["workers"].items()
                }
                if all(n in found for n in names):
                    return {n: found[n] for n in names}
                for n in names:
                    if self.procs[n].poll() is not None:
                        log = (self.dirs[n] / "log.txt").read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"dask worker {n} exited:\n{log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers {names} did not join; found {sorted(found)}")
                time.sleep(0.5)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = Path(tempfile.mkdtemp(prefix="autograder-dask-"))
    hidden = [
        tmp_path_factory.getbasetemp(),
        ROOT / "source",
        ROOT / "release",
        ROOT / "examples",
    ]
    c = Cluster(base, hidden)
    try:
        c.start_scheduler()
        c.start_worker("good-1")
        c.start_worker("good-2")
        c.start_worker("unfit", nthreads=1, unfit=c.isolated)
        c.addresses = c.wait_workers(["good-1", "good-2", "unfit"])
        yield c
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def _course_from_sample(base: Path) -> Course:
    course = Course.create(base, sorted(p.name for p in (ROOT / "source").iterdir() if p.is_dir()))
    shutil.copytree(SAMPLE, course.root / "submitted")
    return course


def _gradebook_rows(course: Course) -> list[tuple[str, str]]:
    """(assignment, student) of every submission in the course's gradebook."""
    api = nbgrader_api(course.root)
    with in_dir(course.root), api.gradebook as gb:
        return sorted((a.name, s.student.id) for a in gb.assignments for s in a.submissions)


def _scores(outcomes) -> dict:
    return {
        (o.assignment, o.student): (o.status, o.code, {k: v[0] for k, v in o.cells.items()})
        for o in outcomes
    }


@pytest.mark.slow
def test_sample_class_on_the_cluster_into_postgres_as_local_into_sqlite(
    cluster, tmp_path, postgres_server, capfd
):
    if cluster.isolated:
        # The workers cannot see this test's course (their mount namespace hides it).
        from distributed import Client

        with Client(cluster.address, timeout=30) as client:
            seen = client.run(
                os.path.exists,
                str(tmp_path),
                workers=[cluster.addresses["good-1"], cluster.addresses["good-2"]],
            )
        assert seen and not any(seen.values()), seen

    local = _course_from_sample(tmp_path / "local")
    local_outcomes = course_mod.grade(course_dir=local.root, progress=False)

    remote = _course_from_sample(tmp_path / "remote")
    url = postgres_server.new_database("gradebook")
    with (remote.root / "nbgrader_config.py").open("a") as fh:
        fh.write(f"\nc.CourseDirectory.db_url = {url!r}\n")
    assignments = sorted({o.assignment for o in local_outcomes})
    executor = dist.DaskExecutor(
        cluster.address, course_dir=remote.root, assignments=assignments, job_timeout=1800
    )
    with executor:
        remote_outcomes = course_mod.grade(
            course_dir=remote.root, assignment=assignments, progress=False, executor=executor
        )
    printed = capfd.readouterr()

    submitted = len(list(SAMPLE.glob("*/*/*.ipynb")))
    assert len(local_outcomes) == submitted
    ungradable = [
        (o.assignment, o.student, o.reason) for o in local_outcomes if o.status != "graded"
    ]
    assert not ungradable, ungradable
    assert _scores(remote_outcomes) == _scores(local_outcomes)
    # Graded on the cluster, never by the worker that cannot grade, which said so.
    graded_by = set(executor.graded_by.values())
    assert len(executor.graded_by) == submitted
    assert cluster.addresses["unfit"] not in graded_by
    assert graded_by <= {cluster.addresses["good-1"], cluster.addresses["good-2"]}
    if cluster.isolated:
        unfit = cluster.addresses["unfit"]
        assert any(unfit in note and "sandbox" in note for note in executor.notes), executor.notes
        assert f"Dask worker {unfit} cannot grade" in printed.err
    assert "dashboard http://" in printed.err
    # The workers never compiled jsonschema's IRI grammar (seconds of a warm-up's CPU):
    # None in sys.modules, not the module imported before it was kept out.
    from distributed import Client

    def iri_grammar_kept_out() -> bool:  # (defined here: sent to the workers by value)
        import sys

        return "rfc3987_syntax" in sys.modules and sys.modules["rfc3987_syntax"] is None

    with Client(cluster.address, timeout=30) as client:
        kept_out = client.run(iri_grammar_kept_out, workers=sorted(graded_by))
    assert kept_out and all(kept_out.values()), kept_out

    # The coordinator wrote the PostgreSQL gradebook, the feedback and autograded folders.
    assert "postgresql" in nbgrader_api(remote.root).coursedir.db_url
    rows = _gradebook_rows(remote)
    assert rows == sorted(set(rows)) and len(rows) == submitted
    assert rows == _gradebook_rows(local)
    for o in remote_outcomes:
        assert (
            remote.root / "feedback" / o.student / o.assignment / f"{o.assignment}.html"
        ).exists()
        assert remote.autograded_nb(o.student, o.assignment).cells
    # A re-run finds every outcome in place: nothing is sent to the cluster.
    again = course_mod.grade(course_dir=remote.root, progress=False, cluster="tcp://127.0.0.1:9")
    assert all(o.reused for o in again) and _scores(again) == _scores(local_outcomes)


def _expected(assignment: str, student, course: Course) -> dict[str, float]:
    cells = course.auto_cells(assignment)
    return {g: 0.0 if student.blank or g in student.lost else p for g, p in cells.items()}


@pytest.mark.slow
def test_workers_grade_with_the_coordinators_preparation_not_their_own(cluster, tmp_path):
    # The workers' generate_assignment (what preparing a gradebook runs) fails and
    # counts its calls: they must grade anyway, with what the coordinator prepared.
    from distributed import Client

    def sabotage():
        from autograder.core import nbgrader_io

        nbgrader_io.real_generate_assignment = nbgrader_io.generate_assignment
        nbgrader_io.generate_calls = 0

        def refused(*args, **kwargs):
            nbgrader_io.generate_calls += 1
            raise RuntimeError("generate_assignment ran on a Dask worker")

        nbgrader_io.generate_assignment = refused

    def restore():
        from autograder.core import nbgrader_io

        nbgrader_io.generate_assignment = nbgrader_io.real_generate_assignment
        return nbgrader_io.generate_calls

    A = "01_derivatives"
    course = Course.create(tmp_path, [A])
    course.submit("solved", A, course.solved(A))
    course.submit("blank", A, course.release_nb(A))
    good = [cluster.addresses["good-1"], cluster.addresses["good-2"]]
    executor = dist.DaskExecutor(
        cluster.address, course_dir=course.root, assignments=[A], job_timeout=1800
    )
    with Client(cluster.address, timeout=30) as client:
        client.run(sabotage, workers=good)
        try:
            with executor:
                outcomes = course_mod.grade(
                    course_dir=course.root, assignment=[A], progress=False, executor=executor
                )
        finally:
            calls = client.run(restore, workers=good)
    assert calls == dict.fromkeys(good, 0)
    by_student = {o.student: o for o in outcomes}
    assert {o.status for o in outcomes} == {"graded"}, [o.reason for o in outcomes]
    points = course.auto_cells(A)
    assert {g: by_student["solved"].cells[g][0] for g in points} == points
    assert {g: by_student["blank"].cells[g][0] for g in points} == dict.fromkeys(points, 0.0)
    # Ready once the coordinator's preparation arrived; none made there.
    assert executor.worker_phases and all(
        "waiting for the prepared course" in phases and not any("gradebook" in k for k in phases)
        for phases in executor.worker_phases.values()
    )


@pytest.mark.slow
def test_corpus_on_the_cluster_with_a_worker_killed_mid_run(cluster, tmp_path):
    from distributed import Client

    corpus = corpora()
    course = Course.create(tmp_path, sorted(corpus))
    for assignment, module in corpus.items():
        for name, s in module.STUDENTS.items():
            nb = (
                course.release_nb(assignment) if s.blank else course.solved(assignment, **s.answers)
            )
            course.submit(name, assignment, nb)
    total = sum(len(m.STUDENTS) for m in corpus.values())

    executor = dist.DaskExecutor(
        cluster.address, course_dir=course.root, assignments=sorted(corpus), job_timeout=1800
    )
    outcomes: list = []
    failure: list = []

    def run():
        try:
            outcomes.extend(
                course_mod.grade(
                    course_dir=course.root,
                    assignment=sorted(corpus),
                    progress=False,
                    executor=executor,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failure.append(exc)

    victim = "good-2"
    address = cluster.addresses[victim]
    killed_while = []
    with executor:
        thread = threading.Thread(target=run)
        thread.start()
        with Client(cluster.address, timeout=30) as client:
            deadline = time.monotonic() + 1800
            # Once a few results are in and the victim is grading, kill it.
            while thread.is_alive() and time.monotonic() < deadline:
                if len(executor.graded_by) >= 5:
                    busy = client.processing(workers=[address]).get(address, [])
                    if busy:
                        killed_while = list(busy)
                        os.kill(cluster.procs[victim].pid, signal.SIGKILL)
                        break
                time.sleep(0.2)
        thread.join(timeout=3600)
    assert not failure, failure
    assert killed_while, "the victim never graded anything"
    assert cluster.procs[victim].wait(timeout=30) == -signal.SIGKILL

    by_key = {(o.assignment, o.student): o for o in outcomes}
    assert len(outcomes) == total == len(by_key)
    wrong = {}
    for assignment, module in corpus.items():
        for name, s in module.STUDENTS.items():
            o = by_key[(assignment, name)]
            expected = _expected(assignment, s, course)  # the automatic cells' points
            got = {g: o.cells[g][0] for g in expected if g in o.cells}
            if o.status != "graded" or got != expected:
                wrong[(assignment, name)] = (o.status, o.reason, got)
    assert not wrong, wrong
    # Every submission in the gradebook exactly once.
    with sqlite3.connect(course.root / "gradebook.db") as db:
        rows = db.execute(
            "SELECT a.name, s.student_id, COUNT(*) FROM submitted_assignment s"
            " JOIN assignment a ON a.id = s.assignment_id GROUP BY a.name, s.student_id"
        ).fetchall()
    assert len(rows) == total and all(n == 1 for _, _, n in rows)
    # What the killed worker was grading was graded again, by the other worker.
    regraded = [executor.job_of(key) for key in killed_while]
    assert regraded and all(executor.graded_by[job] != address for job in regraded)


@pytest.mark.slow
def test_hand_grades_are_kept_on_the_cluster_as_in_a_local_run(cluster, tmp_path):
    """What tests/test_instructor_edits.py checks of hand grades in a local run, graded on
    the cluster: scores and comments given by hand kept, not marked as needing grading
    again by `grade --force`, in the feedback; kept when a broken resubmission removes the
    submission and back with the same answers; and, an answer changed, the cells it
    bears on marked for grading again, as a local run of the same course marks them."""
    from autograder import notebooks
    from autograder.core.cells import answers_record
    from autograder.core.nbgrader_io import hand_grades_file
    from tests.test_instructor_edits import A, give_by_hand, gradebook_grades

    remote = Course.create(tmp_path / "remote", [A])
    local = Course.create(tmp_path / "local", [A])

    def on_cluster(**kwargs) -> dict:
        executor = dist.DaskExecutor(
            cluster.address, course_dir=remote.root, assignments=[A], job_timeout=1800
        )
        with executor:
            outcomes = course_mod.grade(
                course_dir=remote.root, assignment=[A], progress=False, executor=executor, **kwargs
            )
        return {o.student: o for o in outcomes}

    def answers(course: Course) -> dict:
        path = answers_record(course.root / ".autograder", A, "ada", A)
        return json.loads(path.read_text())

    nb = remote.solved(A)
    explain = "The branch taken decides which operations autograd sees."
    notebooks.cell_by_id(nb, "q4-3-explain").source = explain
    for c in (remote, local):
        c.submit("ada", A, nb)
    assert on_cluster()["ada"].needs_manual == 1
    assert local.grade(A, progress=False)["ada"].needs_manual == 1
    for c in (remote, local):
        give_by_hand(
            c,
            "ada",
            scores={"q4-3-explain": 1.0, "q1-1-forward": 0.5},
            comments={"q4-3-explain": "Clear and right."},
        )

    forced = on_cluster(force=True)["ada"]
    grades = gradebook_grades(remote, "ada")
    assert grades["q4-3-explain"][1:3] == (1.0, False)
    assert grades["q1-1-forward"][:3] == (1.0, 0.5, False)
    assert forced.score == 12.5 + 1 and forced.needs_manual == 0
    assert "Clear and right." in remote.feedback_html("ada", A)
    record = answers(remote)

    # Removed by a broken resubmission (its hand grades kept), back with the same answers.
    path = remote.submit("ada", A, raw=b"{ not json")
    assert on_cluster()["ada"].status == "ungradable"
    assert json.loads(hand_grades_file(remote.root, A, "ada").read_text())[A]["q4-3-explain"]
    notebooks.write(nb, path)
    back = on_cluster()["ada"]
    grades = gradebook_grades(remote, "ada")
    assert grades["q4-3-explain"][1:3] == (1.0, False)
    assert grades["q1-1-forward"][1:3] == (0.5, False)
    assert back.score == 13.5 and back.needs_manual == 0
    assert "Clear and right." in remote.feedback_html("ada", A)
    assert not hand_grades_file(remote.root, A, "ada").exists()
    assert answers(remote) == record

    # One answer changed: the written answer is marked for grading again, and so is the
    # test cell graded by hand (a test cell is judged on all the answers); the hand
    # grades stay; the record of the answers follows. All as in the local run.
    changed = copy.deepcopy(nb)
    notebooks.cell_by_id(changed, "q4-3-explain").source = "Autograd sees the branch taken."
    for c in (remote, local):
        c.submit("ada", A, changed)
    again = on_cluster()["ada"]
    there = local.grade(A, progress=False)["ada"]
    grades = gradebook_grades(remote, "ada")
    review = {g for g, v in grades.items() if g != "flagged" and v[2]}
    assert review == {"q4-3-explain", "q1-1-forward"}
    assert grades["q4-3-explain"][1] == 1.0 and grades["q1-1-forward"][1] == 0.5
    assert grades == gradebook_grades(local, "ada")
    assert (again.score, again.needs_manual) == (there.score, there.needs_manual)
    assert answers(remote) != record and answers(remote) == answers(local)
    assert "Clear and right." in remote.feedback_html("ada", A)


# --- without a cluster ------------------------------------------------------------------


def test_the_cluster_is_named_by_the_option_else_the_environment_else_the_config(
    tmp_path, monkeypatch
):
    monkeypatch.delenv(dist.ENV_CLUSTER, raising=False)
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    assert dist.cluster_setting(tmp_path, None) is None
    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()\nc.Autograder.cluster = 'tcp://config:8786'\n"
    )
    assert dist.cluster_setting(tmp_path, None) == "tcp://config:8786"
    monkeypatch.setenv(dist.ENV_CLUSTER, "tcp://environment:8786")
    assert dist.cluster_setting(tmp_path, None) == "tcp://environment:8786"
    assert dist.cluster_setting(tmp_path, "local:3") == "local:3"


def test_cluster_addresses_are_read_or_refused_in_words():
    assert dist.parse_cluster("local:3") == ("local", 3)
    assert dist.parse_cluster("tcp://10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")
    assert dist.parse_cluster("grader.example.org:8786") == (
        "address",
        "tcp://grader.example.org:8786",
    )
    for bad in ("local", "local:0", "local:two", "grader.example.org"):
        with pytest.raises(dist.ClusterError, match="local:N|tcp://HOST:8786"):
            dist.parse_cluster(bad)


def test_an_unreachable_scheduler_is_named(tmp_path):
    executor = dist.DaskExecutor(
        f"tcp://127.0.0.1:{_free_port()}",
        course_dir=tmp_path,
        assignments=[],
        connect_timeout=2,
    )
    with pytest.raises(dist.ClusterError, match="cannot reach the Dask scheduler at tcp://127"):
        executor.start(None, 1)
    executor.close()


def test_a_worker_with_other_versions_refuses():
    # (a weaker sandbox: the worker `unfit` of the cluster tests)
    from autograder.batch import dask_worker

    here = dask_worker.environment()
    assert {"python", "torch", "nbgrader", "autograder code"} <= set(here)
    assert dask_worker.refusal(here, dask_worker.sandbox_primitives()) is None
    other = dict(here, torch="2.0.0")
    problem = dask_worker.refusal(other, {})
    assert problem == f"torch {here['torch']} here, 2.0.0 on the coordinator"


def test_a_worker_takes_its_threads_worth_of_submissions_and_grades_the_jobs_asked():
    """A Dask worker takes one submission per thread; `--jobs` of them are graded at once
    and the rest wait there, ready; without `--jobs`, every thread's is graded at once."""
    from types import SimpleNamespace

    from autograder.batch import dask_worker

    for nthreads, jobs, want in ((6, 3, (6, 3)), (2, None, (2, 2)), (2, 5, (2, 2)), (4, 0, (4, 4))):
        site = dask_worker.GradingSite(
            SimpleNamespace(jobs=jobs), SimpleNamespace(nthreads=nthreads)
        )
        assert (site.slots, site.jobs) == want, (nthreads, jobs)
    executor = dist.DaskExecutor(
        "tcp://127.0.0.1:9", course_dir=Path("."), assignments=[], threads=3
    )
    assert executor._jobs_per_worker == 3


def test_the_workers_gradebook_is_the_coordinators_for_the_assignments(tmp_path):
    from nbgrader.api import Gradebook, MissingEntry

    from autograder.batch import dask_worker, prepared

    assignments = ["01_derivatives", "02_chain_rule"]
    course = Course.create(tmp_path, [*assignments, "03_vector_jacobian"])
    api = nbgrader_api(course.root)
    with in_dir(course.root), api.gradebook as gb:
        gb.add_student("someone")
    files = prepared.prepared_files(api, course.root, assignments)

    copy = tmp_path / "copy"
    dask_worker.write_files(copy, files)
    generated = course.root / ".autograder" / "generated"
    for a in assignments:
        assert (copy / ".autograder" / "generated" / f"{a}.source-digest").read_bytes() == (
            generated / f"{a}.source-digest"
        ).read_bytes()
        nb = f".autograder/generated/{a}/{a}.ipynb"
        assert (copy / nb).read_bytes() == (course.root / nb).read_bytes()

    def rows(gb, names):
        """What nbgrader says of each assignment, its notebooks and their cells."""
        found = {}
        for name in names:
            assignment = gb.find_assignment(name)
            found[name] = (
                assignment.duedate,
                {
                    (nb.name, nb.kernelspec): sorted(
                        (type(c).__name__, c.name)
                        + tuple(
                            getattr(c, k, None)
                            for k in ("max_score", "cell_type", "locked", "source", "checksum")
                        )
                        for c in [
                            *nb.grade_cells,
                            *nb.solution_cells,
                            *nb.task_cells,
                            *nb.source_cells,
                        ]
                    )
                    for nb in assignment.notebooks
                },
            )
        return found

    with in_dir(course.root), api.gradebook as gb:
        course_id = gb.course_id
        wanted = rows(gb, assignments)
        tables = prepared.assignment_rows(gb, assignments)
    # Opened as nbgrader opens it (no `alembic` needed: the version is in the file).
    with Gradebook(f"sqlite:///{copy / 'gradebook.db'}", course_id) as gb:
        assert rows(gb, assignments) == wanted
        assert prepared.assignment_rows(gb, assignments) == tables  # ids and all
        assert all(cells for _, notebooks in wanted.values() for cells in notebooks.values())
        assert [a.name for a in gb.assignments] == assignments
        assert not gb.students
        with pytest.raises(MissingEntry):
            gb.find_student("someone")


@pytest.mark.slow
def test_grade_command_on_a_local_cluster_scores_as_a_local_run(tmp_path):
    """`autograder grade --cluster local:1`, the command as an instructor types it: a
    LocalCluster started by the command (in the background, while the run prepares),
    its dashboard's address printed, the same scores and summary as grading here."""
    assignment = "01_derivatives"
    courses = {}
    for name in ("here", "cluster"):
        course = Course.create(tmp_path / name, [assignment])
        for student in sorted(p.name for p in SAMPLE.iterdir()):
            shutil.copytree(
                SAMPLE / student / assignment, course.root / "submitted" / student / assignment
            )
        courses[name] = course
    local_outcomes = course_mod.grade(course_dir=courses["here"].root, progress=False)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "autograder"), "--course-dir"]
        + [str(courses["cluster"].root), "grade", assignment, "--cluster", "local:1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = proc.stdout + proc.stderr
    assert "dashboard http://127.0.0.1:" in printed, printed
    assert f"{len(local_outcomes)} graded, 0 ungradable" in printed, printed
    again = course_mod.grade(course_dir=courses["cluster"].root, progress=False)
    assert all(o.reused for o in again)
    assert _scores(again) == _scores(local_outcomes)
    assert _gradebook_rows(courses["cluster"]) == _gradebook_rows(courses["here"])


def test_a_result_is_recorded_whole_or_not_at_all(tmp_path, monkeypatch):
    """A worker's result is written to the course's gradebook in one transaction: one
    that fails part way (a notebook the course does not have) leaves no submission
    behind, not one nbgrader's add_submission had already committed; a sound one is
    recorded with its scores."""
    from nbgrader.api import Gradebook, MissingEntry

    from autograder.core.outcome import Outcome

    monkeypatch.setenv("PATH", str(Path(sys.executable).parent), prepend=os.pathsep)  # alembic
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        gb.add_assignment("a")
        gb.add_notebook("nb", "a")
        for i in range(3):
            gb.add_grade_cell(f"c{i}", "nb", "a", max_score=2, cell_type="code")
    api = nbgrader_api(tmp_path)

    def result(student, notebooks):
        cells = {
            f"c{i}": {
                "auto_score": float(i),
                "needs_manual_grade": False,
                "manual_score": None,
                "extra_credit": None,
            }
            for i in range(3)
        }
        return {
            "outcome": Outcome(student, "a", "graded", "", 3.0, 6.0, 0.0, {}).to_json(),
            "gradebook": {
                "timestamp": None,
                "notebooks": {
                    name: {
                        "late_submission_penalty": None,
                        "flagged": False,
                        "grades": cells,
                        "comments": {},
                    }
                    for name in notebooks
                },
            },
            "autograded": {"nb.ipynb": b"{}"},
            "feedback": {"nb.html": b"<html></html>"},
        }

    with in_dir(tmp_path), api.gradebook as gb:
        with pytest.raises(MissingEntry):
            dist.record_result(api, tmp_path, result("ada", ["nb", "not-in-the-course"]), gb)
        with pytest.raises(MissingEntry):
            gb.find_submission("a", "ada")
        outcome = dist.record_result(api, tmp_path, result("bob", ["nb"]), gb)
    assert (outcome.score, outcome.max_score) == (3.0, 6.0)
    assert outcome.cells == {"c0": (0.0, 2.0), "c1": (1.0, 2.0), "c2": (2.0, 2.0)}
    with in_dir(tmp_path), api.gradebook as gb:
        assert [s.student.id for s in gb.find_assignment("a").submissions] == ["bob"]
    assert (tmp_path / "feedback" / "bob" / "a" / "nb.html").exists()


def test_drop_nanny_environ_removes_only_the_nannys_values(monkeypatch):
    from autograder.batch import dask_worker

    wanted = dask_worker.nanny_environ()
    assert wanted["MALLOC_TRIM_THRESHOLD_"] == "65536" and wanted["PYTHONHASHSEED"] == "6640"
    environ = {**wanted, "OMP_NUM_THREADS": "4", "HOME": "/home/ada"}
    dropped = dask_worker.drop_nanny_environ(environ)
    assert "MALLOC_TRIM_THRESHOLD_" in dropped and "OMP_NUM_THREADS" not in dropped
    # (a value set by hand, not the nanny's, stays)
    assert environ == {"OMP_NUM_THREADS": "4", "HOME": "/home/ada"}


@pytest.mark.slow
def test_a_local_clusters_grading_processes_run_without_the_nannys_settings(tmp_path):
    """A LocalCluster's worker is started by a Dask nanny, which sets its own variables
    in the worker's environment (glibc's heap trimmed at every 64 KiB freed, a fixed hash
    seed, one BLAS thread); the fork server grading starts there runs without them, as
    local grading's does."""
    from autograder.batch import dask_worker

    assignment = "01_derivatives"
    course = Course.create(tmp_path, [assignment])
    student = sorted(p.name for p in SAMPLE.iterdir())[0]
    shutil.copytree(SAMPLE / student / assignment, course.root / "submitted" / student / assignment)

    def environments(dask_worker, plugin):
        """(the worker process's environment as it started, its fork server's)"""

        def read(pid):
            raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)

        site = dask_worker.plugins[plugin].site
        return read("self"), read(site.executor.forkserver.proc.pid)

    before = {k: os.environ[k] for k in _nanny_names() if k in os.environ}
    executor = dist.DaskExecutor("local:1", course_dir=course.root, assignments=[assignment])
    with executor:
        outcomes = course_mod.grade(
            course_dir=course.root, assignment=[assignment], progress=False, executor=executor
        )
        assert [o.status for o in outcomes] == ["graded"]
        ((started, forkserver),) = executor.client.run(
            environments, plugin=executor.plugin_name
        ).values()
    nanny = dask_worker.nanny_environ()
    assert {k: started.get(k) for k in nanny} == nanny  # the nanny set them
    # As local grading's fork server from this process: one intra-op thread (its own
    # setting), the rest as they are here.
    local = executor_mod.quiet_threads(before)
    for name in nanny:
        assert forkserver.get(name) == local.get(name), (name, forkserver.get(name))
    # Nor did they stay in this process's environment (the nanny sets them here first).
    assert all(os.environ.get(k) != v for k, v in nanny.items() if k not in before), before


def _nanny_names() -> list[str]:
    from autograder.batch import dask_worker

    return list(dask_worker.nanny_environ())
