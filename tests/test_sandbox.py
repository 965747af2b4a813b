"""The kernel sandbox, through the real batch pipeline: hostile submissions graded next to
a correct one in one run (see autograder/batch/sandbox.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import tempfile

import psutil
import pytest

from autograder import notebooks
from autograder.batch import sandbox

A = "01_derivatives"
LATER = "02_chain_rule"
FIRST = "q1-differences-answer"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (sandbox.available().root and sandbox.available().mountns),
        reason="needs root and mount namespaces",
    ),
]

PROBE = """
import glob as _glob, os as _os, socket as _socket
_found = []
for _p in ("../../../gradebook.db", {root!r} + "/gradebook.db",
           {root!r} + "/submitted/good/01_derivatives/01_derivatives.ipynb"):
    try:
        open(_p, "rb").read(1); _found.append("read " + _p)
    except OSError:
        pass
    try:
        open(_p, "ab").write(b"x"); _found.append("wrote " + _p)
    except OSError:
        pass
_found += _glob.glob("../../../source/*/*.ipynb") + _glob.glob({root!r} + "/source/*/*.ipynb")
_found += _glob.glob({root!r} + "/submitted/*")
try:
    _socket.create_connection(("127.0.0.1", {port}), timeout=2); _found.append("network")
except OSError:
    pass
print("PROBE", _os.getuid(), _os.getcwd(), _found)
"""

HOG = """
import torch as _torch
_hog = _torch.ones(2**30 // 8 * 2, dtype=_torch.float64)  # 2 GiB, every page touched
"""

FORKER = """
import os as _os, time as _time
_pid = _os.fork()
if _pid == 0:
    _os.setsid()
    _time.sleep(600)
    _os._exit(0)
print("SURVIVOR", _pid)
"""


def _hash(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _output(course, student: str, marker: str) -> str:
    nb = course.autograded_nb(student, A)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    found = re.search(marker + r" ([^\\]*)", text)
    assert found, f"no {marker} line in {student}'s notebook"
    return found.group(1)


# Files planted where a kernel must not see them: the host's temporary directory, beside
# the course directory, the grading user's home.
PLANTED = """
import os as _os
_found = []
for _p in {paths!r}:
    try:
        _found.append("read " + open(_p).read())
    except OSError:
        pass
    try:
        _found += ["listed " + n for n in _os.listdir(_os.path.dirname(_p)) if "planted" in n]
    except OSError:
        pass
for _d in {writable!r}:
    try:
        with open(_os.path.join(_d, "written-by-kernel"), "w") as _fh:
            _fh.write("x")
    except OSError:
        pass
print("PLANTED", _found)
"""

# A line of a later assignment's solution, which this kernel came by somehow: printed.
LEAK = """
import base64 as _b64
print("here it is:")
print(_b64.b64decode({encoded!r}).decode())
"""

ENDINGS = {
    # its own signal
    "self_kill": "import os as _os, signal as _signal\n_os.kill(_os.getpid(), _signal.SIGKILL)",
    "exits": "import os as _os\n_os._exit(3)",
    # processes: more than the limit, each waiting
    "spawner": (
        "import subprocess as _sp\n_kids = []\n"
        "try:\n    for _i in range(200):\n"
        "        _kids.append(_sp.Popen(['sleep', '30']))\n"
        "except OSError as _e:\n    print('SPAWNED', len(_kids), _e)\n"
        "for _k in _kids:\n    _k.kill()"
    ),
    # file size: past AUTOGRADER_SANDBOX_FSIZE (its private /tmp counts too)
    "big_file": (
        "try:\n    with open('/tmp/big', 'wb') as _fh:\n"
        "        _fh.write(b'x' * (3 << 20))\nexcept OSError as _e:\n    print('BIG', _e)"
    ),
    # CPU time: past AUTOGRADER_SANDBOX_CPU (seconds of the kernel's CPU)
    "burner": "while True:\n    pass",
    # asleep: past AUTOGRADER_STALL
    "sleeper": "import time as _time\n_time.sleep(600)",
    # the network
    "caller": (
        "import socket as _socket\n"
        "try:\n    _socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "except OSError as _e:\n    print('REFUSED', _e)"
    ),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One run: a correct submission beside probes of the filesystem, the network, the
    limits and every way a kernel can end."""
    import base64
    import secrets
    from pathlib import Path

    from tests.conftest import Course

    course = Course.create(tmp_path_factory.mktemp("sandbox"), [A, LATER])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    sol = notebooks.solutions(course.source_nb(A))

    def with_code(code: str):
        return course.solved(A, **{FIRST: code + "\n" + sol[FIRST]})

    token = secrets.token_hex(4)
    planted = [
        Path(tempfile.gettempdir()) / f"planted-tmp-{token}.txt",
        course.root.parent / f"planted-beside-{token}.txt",
        Path.home() / f"planted-home-{token}.txt",
    ]
    for path in planted:
        path.write_text("SECRET")
    package = Path(sandbox.__file__).resolve().parents[1]
    writable = [str(p.parent) for p in planted] + [
        str(course.root),
        str(package),
        sys.prefix,
        "/usr/local",
    ]
    course.submit("good", A, course.solved(A))
    course.submit("probe", A, with_code(PROBE.format(root=str(course.root), port=port)))
    probe = PLANTED.format(paths=list(map(str, planted)), writable=writable)
    course.submit("planted", A, with_code(probe))
    leaked = _later_solution_line(course)
    encoded = base64.b64encode(leaked.encode()).decode()
    course.submit("leaker", A, with_code(LEAK.format(encoded=encoded)))
    course.submit("hog", A, with_code(HOG))
    course.submit("forker", A, with_code(FORKER))
    for name, code in ENDINGS.items():
        course.submit(name, A, with_code(code.format(port=port)))
    (course.root / "submitted" / "probe" / A / "data.txt").write_text("mine")
    protected = [
        *course.root.glob("source/*/*.ipynb"),
        course.root / "submitted" / "good" / A / f"{A}.ipynb",
    ]
    before = _hash(protected)
    env = {
        "AUTOGRADER_SANDBOX_MEMORY": "1G",
        "AUTOGRADER_SANDBOX_FSIZE": "2M",
        "AUTOGRADER_SANDBOX_CPU": "12",
        "AUTOGRADER_STALL": "3",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        outcomes = course.grade(A, timeout=60, wall_timeout=120)
    finally:
        listener.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    written = [
        os.path.join(d, "written-by-kernel")
        for d in writable
        if os.path.exists(os.path.join(d, "written-by-kernel"))
    ]
    for path in planted:
        path.unlink()
    for path in written:
        os.unlink(path)
    return course, outcomes, before, _hash(protected), (written, leaked)


def _later_solution_line(course) -> str:
    """A line of a later assignment's solutions that its released notebook does not show."""
    released = "\n".join(c.source for c in course.release_nb(LATER).cells)
    for code in notebooks.solutions(course.source_nb(LATER)).values():
        for line in code.splitlines():
            if len(line.strip()) > 25 and line.strip() not in released:
                return line
    raise AssertionError("no solution line to leak")


def test_correct_student_keeps_full_marks(graded):
    _, outcomes, _, _, _ = graded
    good = outcomes["good"]
    assert good.status == "graded", good.reason
    short = {k for k, (s, m) in good.cells.items() if s != m}
    assert short <= {"q4-3-explain"}, good.cells  # a written answer, graded by hand
    assert outcomes["probe"].score == good.score  # confined, but its answers still count


def test_kernel_sees_nothing_of_the_course_and_has_no_network(graded):
    course, _, _, _, _ = graded
    line = _output(course, "probe", "PROBE")
    uid, cwd, found = line.split(" ", 2)
    assert int(uid) >= sandbox.UID_BASE
    assert not cwd.startswith(str(course.root))
    assert found.strip() == "[]", found


def test_reads_outside_the_kernels_directory_are_flagged(graded):
    """The probe found nothing, but its attempts are named in the summary and feedback;
    the other submissions (a fork, a memory hog, a correct one) are not flagged."""
    course, outcomes, _, _, _ = graded
    probe = outcomes["probe"]
    assert probe.code == "tampered", probe.reason
    assert "reached outside its directory" in probe.reason
    assert "gradebook.db" in probe.reason
    page = notebooks.plain(course.feedback_html("probe", A))
    assert "Flagged for review" in page and "reached outside its directory" in page
    for name in ("good", "forker"):
        assert "outside" not in (outcomes[name].reason or ""), outcomes[name].reason
        assert "Flagged for review" not in course.feedback_html(name, A)


def test_protected_files_unchanged(graded):
    _, _, before, after, _ = graded
    assert before == after


def test_memory_hog_stopped_with_reason(graded):
    _, outcomes, _, _, _ = graded
    hog = outcomes["hog"]
    assert hog.status == "ungradable"
    assert hog.code == "limit_exceeded", hog.reason
    assert "memory limit" in hog.reason and "1 GiB" in hog.reason


def test_fork_survivor_killed(graded):
    course, outcomes, _, _, _ = graded
    assert outcomes["forker"].status == "graded"
    pid = int(_output(course, "forker", "SURVIVOR").split()[0])
    if psutil.pid_exists(pid):
        proc = psutil.Process(pid)
        assert proc.status() == psutil.STATUS_ZOMBIE or proc.uids().real < sandbox.UID_BASE


def test_missing_protections_listed():
    full = sandbox.Available(True, True, True, True, True)
    assert full.missing(sandbox.Limits()) == []
    bare = sandbox.Available(False, False, False, False, False)
    text = " ".join(bare.missing(sandbox.Limits()))
    assert "not root" in text and "network" in text and "memory" in text
    no_bwrap = sandbox.Available(True, True, True, True, True, bwrap=False)
    assert "bubblewrap" in " ".join(no_bwrap.missing(sandbox.Limits()))
    assert "turned off" in " ".join(bare.missing(sandbox.Limits(enabled=False)))
    assert sandbox.Limits.from_env({"AUTOGRADER_SANDBOX_MEMORY": "512M"}).memory_bytes == 512 << 20
    assert not sandbox.Limits.from_env({"AUTOGRADER_SANDBOX": "0"}).enabled


# --- the hostile submissions that reach outside the kernel, in one batch ------------------

OUTSIDE = [
    "exit_kernel",
    "ignore_interrupt_loop",
    "fork_survivor",
    "write_gradebook",
    "write_course_files",
    "read_solutions",
    "read_other_submissions",
    "read_checkout_solutions",
    "write_host_tmp",
    "sleep_forever",
    "flood_output",
    "exhaust_memory",
]


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory):
    """Each hostile submission of tests/hostile that reaches for files, processes, output
    or memory, graded in one run beside a correct and a blank submission."""
    import time

    from tests.conftest import Course
    from tests.hostile import ASSIGNMENT, notebook

    course = Course.create(tmp_path_factory.mktemp("outside"), [ASSIGNMENT])
    course.submit("victim", ASSIGNMENT, course.solved(ASSIGNMENT))
    course.submit("blank", ASSIGNMENT, course.release_nb(ASSIGNMENT))
    for name in OUTSIDE:
        course.submit(name, ASSIGNMENT, notebook(course, name))
    # (release/ is regenerated from source/ by the grader itself, so it is not hashed.)
    files = [
        *course.root.glob("source/*/*.ipynb"),
        *course.root.glob("submitted/*/*/*.ipynb"),
        course.root / "nbgrader_config.py",
    ]
    before = _hash(files)
    old = os.environ.get("AUTOGRADER_SANDBOX_MEMORY")
    os.environ["AUTOGRADER_SANDBOX_MEMORY"] = "1G"
    try:
        outcomes = course.grade(ASSIGNMENT, timeout=3.0, wall_timeout=8.0)
    finally:
        if old is None:
            os.environ.pop("AUTOGRADER_SANDBOX_MEMORY", None)
        else:
            os.environ["AUTOGRADER_SANDBOX_MEMORY"] = old
    time.sleep(10)  # what a surviving child would wait for before writing
    after = _hash(files)
    left = [p for p in ("/tmp/hostile-leftover", "/var/tmp/hostile-leftover") if os.path.exists(p)]
    after["files left in the host's /tmp"] = left
    before["files left in the host's /tmp"] = []
    after["victim's score in the gradebook"] = _victim_score(course.root, ASSIGNMENT)
    before["victim's score in the gradebook"] = 13.0
    return course, outcomes, before, after


def _victim_score(root, assignment: str) -> float | None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        return gb.find_submission(assignment, "victim").score


def test_the_outside_batch_completes_and_the_victim_keeps_full_marks(hostile_batch):
    course, outcomes, _, _ = hostile_batch
    assert set(outcomes) == {"victim", "blank", *OUTSIDE}
    assert outcomes["victim"].status == "graded" and outcomes["victim"].score == 13


@pytest.mark.parametrize("name", OUTSIDE)
def test_reaching_outside_scores_no_more_than_blank(hostile_batch, name):
    from tests.hostile import HOSTILE

    _, outcomes, _, _ = hostile_batch
    assert outcomes["blank"].score == 0
    assert outcomes[name].score <= outcomes["blank"].score, (HOSTILE[name].about, outcomes[name])


READERS = [
    "write_gradebook",
    "write_course_files",
    "read_solutions",
    "read_other_submissions",
    "read_checkout_solutions",
]


@pytest.mark.parametrize("name", READERS)
def test_reaching_for_course_files_is_flagged(hostile_batch, name):
    _, outcomes, _, _ = hostile_batch
    assert "reached outside its directory" in (outcomes[name].reason or ""), outcomes[name]


def test_honest_submissions_beside_them_are_not_flagged(hostile_batch):
    _, outcomes, _, _ = hostile_batch
    for name in ("victim", "blank"):
        assert not outcomes[name].reason, outcomes[name].reason


def test_no_course_file_or_other_grade_changed(hostile_batch):
    """Course files hashed before the run and after (and after a survivor's delay), and
    the correct student's score read back from the gradebook."""
    _, _, before, after = hostile_batch
    assert after == before


# --- the allowlist: nothing of the host but what Python needs ---------------------------


def test_kernel_neither_lists_nor_reads_files_planted_outside(graded):
    """Files planted in the host's /tmp, beside the course directory and in the grading
    user's home: the kernel finds none of them, by name or content."""
    course, outcomes, _, _, _ = graded
    assert sandbox.available().bwrap, "bubblewrap is installed by `make system-packages`"
    assert outcomes["planted"].status == "graded", outcomes["planted"].reason
    assert _output(course, "planted", "PLANTED").strip() == "[]"


def test_kernel_writes_nothing_outside_its_directory(graded):
    """Writing into the host's /tmp, home, the course's parent and the course, the course
    package, the environment and /usr/local: nothing appears on the host."""
    _, _, _, _, (written, _) = graded
    assert written == []


def test_solution_line_printed_does_not_reach_the_feedback(graded):
    """A kernel that prints a line of a later assignment's solution: the line is in
    neither its graded notebook nor its feedback, and the submission is flagged."""
    course, outcomes, _, _, (_, leaked) = graded
    leaker = outcomes["leaker"]
    assert leaker.code == "tampered", leaker.reason
    assert "reproduced the course's solutions or hidden tests (1 line" in leaker.reason
    graded_nb = json.dumps([c.get("outputs", []) for c in course.autograded_nb("leaker", A).cells])
    page = course.feedback_html("leaker", A)
    assert "here it is:" in graded_nb  # the rest of its output stays
    for text in (graded_nb, page, notebooks.plain(page)):
        assert leaked.strip() not in text
    assert "redacted" in notebooks.plain(page) and "Flagged for review" in page
    assert leaker.score == outcomes["good"].score  # its answers still count


# --- every way a kernel ends, named -------------------------------------------------------


def test_kernel_that_killed_itself_is_not_called_out_of_memory(graded):
    _, outcomes, _, _, _ = graded
    o = outcomes["self_kill"]
    assert (o.status, o.code) == ("ungradable", "kernel_died"), o.reason
    assert "killed by SIGKILL (signal 9), sent by the kernel or a process of its own" in o.reason
    assert "0 OOM kills" in o.reason and "memory" not in o.reason.split("(", 2)[1]
    assert "out of memory" not in o.reason


def test_kernel_that_exited_names_its_status(graded):
    _, outcomes, _, _, _ = graded
    o = outcomes["exits"]
    assert (o.status, o.code) == ("ungradable", "kernel_died"), o.reason
    assert "it exited by itself, exit status 3" in o.reason


def test_memory_limit_named(graded):
    _, outcomes, _, _, _ = graded
    o = outcomes["hog"]
    assert (o.status, o.code) == ("ungradable", "limit_exceeded"), o.reason
    assert "killed by SIGKILL" in o.reason and "memory limit reached" in o.reason


def test_process_limit_named(graded):
    course, outcomes, _, _, _ = graded
    o = outcomes["spawner"]
    assert (o.status, o.code) == ("graded", "limit_exceeded"), o.reason
    assert "process limit reached" in o.reason and "at most 64" in o.reason
    assert "Resource temporarily unavailable" in _output(course, "spawner", "SPAWNED")


def test_file_size_limit_named(graded):
    course, outcomes, _, _, _ = graded
    o = outcomes["big_file"]
    assert (o.status, o.code) == ("graded", "limit_exceeded"), o.reason
    assert "file size limit reached: a file of 2 MiB (/tmp/big)" in o.reason
    assert "File too large" in _output(course, "big_file", "BIG")


def test_cpu_time_limit_named(graded):
    _, outcomes, _, _, _ = graded
    o = outcomes["burner"]
    assert (o.status, o.code) == ("ungradable", "limit_exceeded"), o.reason
    assert "killed by SIGXCPU" in o.reason and "CPU time limit reached: more than 12 s" in o.reason


def test_stall_named(graded):
    _, outcomes, _, _, _ = graded
    o = outcomes["sleeper"]
    assert (o.status, o.code) == ("graded", "stalled"), o.reason
    assert "stalled: q1-differences-answer was asleep or blocked" in o.reason
    assert "for more than 3 s" in o.reason and "the other cells were graded" in o.reason
    lost = {k for k, (score, most) in o.cells.items() if score != most} - {"q4-3-explain"}
    assert lost and all(k.startswith("q1-") for k in lost), o.cells  # the rest graded


def test_network_refused_named(graded):
    course, outcomes, _, _, _ = graded
    o = outcomes["caller"]
    assert (o.status, o.code) == ("graded", "network_refused"), o.reason
    assert "network refused" in o.reason and "127.0.0.1:" in o.reason
    assert "REFUSED" in json.dumps(
        [c.get("outputs", []) for c in course.autograded_nb("caller", A).cells]
    )


def test_without_bubblewrap_grading_says_what_is_missing_and_still_grades(make_course):
    """bwrap absent (AUTOGRADER_BWRAP names a program that is not there): `autograder
    grade` warns as the run starts and in its summary that kernels see the host's files,
    and grades the class all the same."""
    import subprocess

    course = make_course(A)
    course.submit("good", A, course.solved(A))
    env = dict(os.environ, AUTOGRADER_BWRAP="/nonexistent/bwrap", COLUMNS="200")
    done = subprocess.run(
        [sys.executable, "-m", "autograder.cli", "grade", A],
        cwd=course.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    words = "kernel sandbox: bubblewrap (/nonexistent/bwrap) not installed"
    assert f"WARNING: {words}" in done.stderr
    summary = " ".join(done.stdout.split())
    assert f"warning: {words}" in summary, done.stdout
    assert "kernels see the host's files" in summary
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 graded, 0 ungradable" in summary
    assert (course.root / "feedback" / "good" / A / f"{A}.html").exists()


def test_kernel_folders_leave_room_for_their_sockets(monkeypatch, tmp_path):
    """Under a TMPDIR too long for a kernel's Unix sockets, kernel folders go to /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    assert sandbox.Jail.base_dir() == "/tmp/autograder-kernels"
    short = tmp_path / "t"
    monkeypatch.setattr(tempfile, "tempdir", str(short))
    if len(str(short)) + 19 <= sandbox.SOCKET_PATH_MAX - 44:
        assert sandbox.Jail.base_dir() == f"{short}/autograder-kernels"
    monkeypatch.setattr(tempfile, "tempdir", "/" + "x" * 80)
    assert sandbox.Jail.base_dir() == "/tmp/autograder-kernels"
    longest = "/61000-abcdefgh/.autograder-abcdefgh/channel"
    assert len(sandbox.Jail.base_dir() + longest) <= sandbox.SOCKET_PATH_MAX
