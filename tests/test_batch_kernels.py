"""Kernels forked from the warm fork server: do they behave like fresh kernels, share
nothing, and die when they should? And does the executor survive a stuck worker?"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import nbformat
import psutil
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from autograder import notebooks
from autograder.batch import execution, provisioner
from autograder.batch.executor import ForkServerProcess, LocalExecutor
from autograder.core.request import Settings
from autograder.core.runs import NotebookRun
from tests import batch_support as bs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def forkserver(tmp_path_factory):
    """A warm fork server and the kernelspec that selects it, for the whole module."""
    run_dir = tmp_path_factory.mktemp("fs")
    server = ForkServerProcess(run_dir, run_dir)
    server.start()
    assert server.wait_ready(), server.problem
    provisioner.write_kernelspec(run_dir / "jupyter", server.socket)
    provisioner.register_entry_point()
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(run_dir / "jupyter")
    yield server
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old
    server.stop()


def _run(kernel_name: str, sources: list[str], cwd, env=None) -> list[str]:
    """Execute cells with nbclient; each cell's outputs as text (images by mime type)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        NotebookClient(
            nb,
            kernel_name=kernel_name,
            resources={"metadata": {"path": str(cwd)}},
            timeout=120,
            allow_errors=True,
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    texts = []
    for cell in nb.cells:
        parts = []
        for out in cell.outputs:
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type == "error":
                parts.append(notebooks.plain("\n".join(out.traceback)))
            else:
                parts.append(" ".join(sorted(out.get("data", {}))))
        texts.append("".join(parts).strip())
    return texts


FIDELITY = [
    "import os, sys\nprint(os.getcwd())\nprint(os.environ.get('AG_PROBE'))",
    "print('' in sys.path, os.path.basename(sys.argv[0]))",
    "print(type(get_ipython()).__name__, __name__)",
    "import matplotlib\nprint(matplotlib.get_backend())",
    # A figure without any %matplotlib magic is shown inline, as in a fresh kernel.
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);",
    # Shown at once and then at the end of the cell: two images, in either kernel.
    "fig, ax = plt.subplots()\nax.plot([1, 2])\nplt.show()\nfig2, ax2 = plt.subplots()\n"
    "ax2.plot([2, 1]);",
    "import torch\nprint(torch.get_default_dtype(), torch.get_num_threads() >= 1)",
    "import autograder\nfrom autograder.checking.feedback import CheckFailed\n"
    "raise CheckFailed('Q1', 'wrong value', 'expected 2, got 3', [])",
    "1/0",
    # Output order across streams, explicit flushes, and a flush with nothing to send.
    "sys.stdout.flush()\nprint('a')\nsys.stdout.flush()\nprint('b', file=sys.stderr)\n"
    "sys.stderr.flush()\nprint('c', end='')\nsys.stderr.flush()\nprint('d')",
]


def test_forked_kernel_behaves_like_a_fresh_kernel(forkserver, tmp_path):
    """Does a notebook print the same things (working directory, environment, sys.path,
    matplotlib backend and inline figures, torch's defaults, the course's short error
    display) in a forked kernel as in an ordinary one?"""
    env = {"AG_PROBE": "from-the-manager"}
    fresh = _run("python3", FIDELITY, tmp_path, env)
    forked = _run(provisioner.KERNEL_NAME, FIDELITY, tmp_path, env)
    assert forked == fresh
    assert forked[0].splitlines() == [str(tmp_path), "from-the-manager"]
    assert "image/png" in forked[4]
    assert forked[5].count("image/png") == 2
    assert "wrong value" in forked[7] and "Traceback" not in forked[7]
    assert forked[9].split() == ["a", "b", "cd"]


PRELOADED = [
    "import sys\nprint(sorted(m for m in sys.modules if m.startswith('autograder')))",
    "from autograder.assignments import a01\n"
    "print(a01.check_forward_difference.__name__, a01.check_forward_difference.skips_hidden)",
]


@pytest.mark.parametrize("hidden_by_grader", ["1", ""])
def test_course_helpers_are_preloaded_but_assignments_read_the_kernels_environment(
    forkserver, tmp_path, hidden_by_grader
):
    """The course's checking helpers are already imported in a forked kernel (every graded
    notebook imports them); a per-assignment module is not, so whether its hidden checks
    are left to the grader follows the kernel's own environment, not the server's."""
    env = {"AUTOGRADER_HIDDEN_BY_GRADER": hidden_by_grader}
    loaded, deferred = _run(provisioner.KERNEL_NAME, PRELOADED, tmp_path, env)
    assert "'autograder.checking.compare'" in loaded and "'autograder.checking.forbid'" in loaded
    assert "autograder.assignments.a0" not in loaded
    assert deferred == f"check_forward_difference {hidden_by_grader == '1'}"


DRAWS = [
    "import matplotlib.pyplot as plt\ndraws = []\nfig, ax = plt.subplots()\nax.plot([1, 2])\n"
    "fig.canvas.mpl_connect('draw_event', lambda event: draws.append(1));",
    "print(len(draws))",
]


def test_forked_kernels_draw_each_inline_figure_once(forkserver, tmp_path):
    """A fresh kernel draws a figure left open at the end of a cell once more than it
    shows it (pyplot's redraw, then the inline backend's rendering); a grading kernel
    skips the redraw nobody sees and shows the same image."""
    fresh = _run("python3", DRAWS, tmp_path)
    forked = _run(provisioner.KERNEL_NAME, DRAWS, tmp_path)
    assert fresh[0] == forked[0] and forked[0].count("image/png") == 1
    assert int(forked[1]) == int(fresh[1]) - 1


def test_students_share_nothing(forkserver, tmp_path):
    """Does what one kernel changes in torch, numpy or any module stay out of the next
    kernel, and do unseeded random draws (numpy, torch) differ between kernels?"""
    first = _run(
        provisioner.KERNEL_NAME,
        [
            "import torch, numpy, json\ntorch.cheat = 1\njson.cheat = 1\n"
            "torch.manual_seed(0)\nnumpy.random.seed(0)\nprint(numpy.random.rand())",
        ],
        tmp_path,
    )
    second = _run(
        provisioner.KERNEL_NAME,
        [
            "import torch, numpy, json\nprint(hasattr(torch, 'cheat'), hasattr(json, 'cheat'))",
            "print(numpy.random.rand(), torch.rand(1).item())",
        ],
        tmp_path,
    )
    third = _run(
        provisioner.KERNEL_NAME,
        ["import numpy, torch\nprint(numpy.random.rand(), torch.rand(1).item())"],
        tmp_path,
    )
    assert second[0] == "False False"
    numpy_draws = {first[0], second[1].split()[0], third[0].split()[0]}
    assert len(numpy_draws) == 3 and second[1].split()[1] != third[0].split()[1]


def _start_kernel(tmp_path) -> KernelManager:
    km = KernelManager(kernel_name=provisioner.KERNEL_NAME)
    km.start_kernel(cwd=str(tmp_path), extra_arguments=["--HistoryManager.hist_file=:memory:"])
    return km


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_a_kernel_dies_with_the_worker_that_asked_for_it(forkserver, tmp_path):
    """If the grading worker is killed, is its kernel killed too (no orphan kernels)?"""
    script = textwrap.dedent(
        f"""
        import os, sys, time
        os.environ["JUPYTER_PATH"] = {os.environ["JUPYTER_PATH"]!r}
        from autograder.batch import provisioner
        provisioner.register_entry_point()
        from jupyter_client.manager import KernelManager
        km = KernelManager(kernel_name=provisioner.KERNEL_NAME)
        km.start_kernel(cwd={str(tmp_path)!r})
        print(km.provisioner.pid, flush=True)
        time.sleep(600)
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    kernel_pid = int(worker.stdout.readline())
    assert psutil.pid_exists(kernel_pid)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert _gone(kernel_pid)


def test_time_limit_kills_the_kernel_and_everything_it_started(forkserver, tmp_path):
    """Does a cell that ignores interrupts and burns CPU get its kernel killed, with the
    processes it started, and is that recorded?"""
    km = _start_kernel(tmp_path)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        pid = km.provisioner.pid
        run = NotebookRun()
        watch = execution.CellWatch(
            pid, pid, cpu_limit=1.0, wall_limit=60, grace_cpu=1.0, grace_wall=5, run=run
        )
        watch.start_cell(3, "q-loop")
        kc.execute(
            "import signal, subprocess\nchild = subprocess.Popen(['sleep', '600'])\n"
            "print(child.pid, flush=True)\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "while True:\n    pass"
        )
        child_pid = None
        while child_pid is None:
            msg = kc.get_iopub_msg(timeout=30)
            if msg["msg_type"] == "stream":
                child_pid = int(msg["content"]["text"].split()[0])
        assert _gone(pid, within=30)
        assert _gone(child_pid)
        watch.stop()
        assert [(e.action, e.label, e.limit) for e in run.events] == [
            ("interrupted", "q-loop", "cpu"),
            ("killed", "q-loop", "cpu"),
        ]
        assert run.events[0].cpu > 1.0
    finally:
        kc.stop_channels()
        km.cleanup_resources()


def test_not_a_kernel_command_is_refused(forkserver):
    """Does the fork server refuse to run anything but ipykernel?"""
    with pytest.raises(provisioner.ForkUnavailable, match="not an ipykernel"):
        provisioner.spawn(forkserver.socket, ["/bin/sh", "-c", "echo hi"])


def test_a_stuck_worker_is_replaced_and_its_student_recorded(make_course):
    """If grading one submission takes longer than the job limit, is the worker killed,
    the student recorded as ungradable, and the batch finished by a fresh worker?"""
    course = make_course(bs.A)
    course.submit("slow", bs.A, course.solved(bs.A))
    bs.in_gradebook(course, bs.A)
    settings = Settings(course_dir=str(course.root), assignment=bs.A)
    with LocalExecutor(1, fork=False, job_timeout=1.0, log_dir=course.root / "logs") as ex:
        outcomes = list(ex.run(settings, ["slow"]))
    assert [(o.student, o.status, o.code) for o in outcomes] == [
        ("slow", "ungradable", "worker_hung")
    ]
    assert bs.processes_mentioning(str(course.root)) == []


def test_one_queue_grades_several_assignments(make_course):
    """Can one worker take submissions of different assignments from one queue, each
    graded against its own assignment, so that no core waits at an assignment's end?"""
    course = make_course(bs.A, "04_parametrized")
    course.submit("ada", bs.A, course.solved(bs.A))
    course.submit("ada", "04_parametrized", course.release_nb("04_parametrized"))
    course.submit("bo", "04_parametrized", course.solved("04_parametrized"))
    bs.in_gradebook(course, bs.A, "04_parametrized")
    settings = Settings(course_dir=str(course.root), assignment=bs.A)
    jobs = [("04_parametrized", "ada"), (bs.A, "ada"), ("04_parametrized", "bo")]
    with LocalExecutor(1, log_dir=course.root / "logs") as ex:
        outcomes = list(ex.run_jobs(settings, jobs))
    got = {(o.assignment, o.student): o for o in outcomes}
    assert sorted(got) == sorted(jobs)
    assert all(o.status == "graded" and not o.code for o in outcomes)
    solved_a = got[bs.A, "ada"]  # every automatic point of the other assignment
    assert solved_a.max_score > 13 and solved_a.score == solved_a.max_score - solved_a.needs_manual
    assert (got["04_parametrized", "ada"].score, got["04_parametrized", "bo"].score) == (0, 13)
    assert len(list((course.root / "logs").glob("worker-*.log"))) == 1  # one worker did all


def test_a_lost_job_is_recorded_under_its_own_assignment(make_course):
    """When workers hang on jobs of two assignments, is each student recorded as
    ungradable under the assignment it was being graded for?"""
    course = make_course(bs.A, "04_parametrized")
    course.submit("slow", bs.A, course.solved(bs.A))
    course.submit("slow", "04_parametrized", course.solved("04_parametrized"))
    bs.in_gradebook(course, bs.A, "04_parametrized")
    settings = Settings(course_dir=str(course.root), assignment=bs.A)
    jobs = [(bs.A, "slow"), ("04_parametrized", "slow")]
    with LocalExecutor(1, fork=False, job_timeout=1.0, log_dir=course.root / "logs") as ex:
        outcomes = list(ex.run_jobs(settings, jobs))
    assert sorted((o.assignment, o.student, o.code) for o in outcomes) == sorted(
        [(bs.A, "slow", "worker_hung"), ("04_parametrized", "slow", "worker_hung")]
    )


def _dies_at_once(self, learn=None, workers=None):
    """A fork server that fails before it could start anything (e.g. a broken torch)."""
    fds = [int(slot.split(":", 1)[0]) for slot in workers or []]
    self.proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.exit(3)"],
        pass_fds=fds,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def test_workers_start_without_a_fork_server_that_failed_early(make_course, monkeypatch):
    """The fork server starts the grading workers while it warms up. If it dies before
    it could, are workers started directly and the class graded, with a note saying so?"""
    course = make_course(bs.A)
    for name in ("ada", "bo"):
        course.submit(name, bs.A, course.solved(bs.A))
    bs.in_gradebook(course, bs.A)
    monkeypatch.setattr(ForkServerProcess, "start", _dies_at_once)
    settings = Settings(course_dir=str(course.root), assignment=bs.A)
    with LocalExecutor(2, log_dir=course.root / "logs") as ex:
        outcomes = list(ex.run(settings, ["ada", "bo"]))
        notes = list(ex.notes)
    full = sum(bs.auto_points(course).values())
    assert sorted((o.student, o.status, o.code, o.score) for o in outcomes) == [
        ("ada", "graded", "", full),
        ("bo", "graded", "", full),
    ]
    assert any("fork server did not start" in n for n in notes), notes
    assert any("started directly" in n for n in notes), notes
    assert bs.processes_mentioning(str(course.root)) == []


def test_grading_goes_on_when_the_fork_server_dies_mid_run(make_course):
    """The workers the fork server started do not depend on it: if it is killed half-way,
    does every submission still get graded (by ordinary kernels), none lost?"""
    course = make_course(bs.A)
    names = ["ada", "bo", "cy"]
    for name in names:
        course.submit(name, bs.A, course.solved(bs.A))
    bs.in_gradebook(course, bs.A)
    settings = Settings(course_dir=str(course.root), assignment=bs.A)
    outcomes = []
    with LocalExecutor(1, log_dir=course.root / "logs") as ex:
        for outcome in ex.run(settings, names):
            outcomes.append(outcome)
            if len(outcomes) == 1:
                server = ex.forkserver.proc
                server.kill()
                server.wait()
    full = sum(bs.auto_points(course).values())
    assert sorted((o.student, o.status, o.code, o.score) for o in outcomes) == [
        (name, "graded", "", full) for name in names
    ]
    assert len(list((course.root / "logs").glob("worker-*.log"))) == 1  # the same worker
    assert bs.processes_mentioning(str(course.root)) == []


def test_output_is_capped_per_cell_and_per_notebook(tmp_path):
    """A flood of output is cut (with a note) once a cell, or the whole notebook, has
    printed its share; what came before is kept."""
    from autograder.judge.preprocessor import TrustedExecute

    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.cells = [v4.new_code_cell("print('a' * 600_000)")]  # over the cell's share
    nb.cells += [v4.new_code_cell(f"print('{c}' * 300_000)") for c in "bcde"]
    ex = TrustedExecute(
        max_output_bytes=500_000, max_total_output_bytes=1_200_000, kernel_name="python3"
    )
    ex.preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    texts = ["".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells]
    assert "[output cut: this cell printed more than 500000 bytes]" in texts[0]
    assert texts[0].count("a") <= 500_000
    assert texts[1].count("b") == 300_000 and texts[2].count("c") == 300_000
    assert "the notebook printed more than 1200000 bytes" in texts[3] + texts[4]
    assert sum(len(t) for t in texts) < 1_300_000


def test_figures_made_for_the_grader_are_closed_not_rendered(tmp_path):
    """A plotting answer called by the grader's re-check makes a figure in the kernel; the
    grader reads it as data. Is it closed when the re-check ends, instead of being
    rendered for an output nobody reads?"""
    import json
    import secrets
    import socket

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        setup = (
            "%matplotlib inline\n"
            "import matplotlib.pyplot as plt\n"
            "def plot_it(n):\n"
            "    fig, ax = plt.subplots()\n"
            "    ax.plot(range(n))\n"
            "    return fig\n"
        )
        reply = kc.execute_interactive(setup, timeout=60)
        assert reply["content"]["status"] == "ok"
        path = str(tmp_path / "channel")
        token = secrets.token_hex(8)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        msg_id = kc.execute(
            f"__import__('autograder.kernel.remote', fromlist=['channel']).channel({path!r}, {token!r})"
        )
        server.settimeout(30)
        conn, _ = server.accept()
        lines = conn.makefile("rb")
        assert json.loads(lines.readline())["hello"] == token
        request = {"op": "call", "target": "plot_it", "args": [3], "kwargs": {"__dict__": []}}
        conn.sendall(json.dumps(dict(request, id=1)).encode() + b"\n")
        assert "__figure__" in json.loads(lines.readline())["ok"]  # sent as data
        conn.sendall(b'{"op": "bye"}\n')
        outputs = []
        while True:
            msg = kc.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            outputs.append(msg)
        assert not [m for m in outputs if "image/png" in m["content"].get("data", {})]
        check = kc.execute_interactive(
            "print(plt.get_fignums())", timeout=60, output_hook=outputs.append
        )
        assert check["content"]["status"] == "ok"
        printed = "".join(
            m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream"
        )
        assert printed.strip() == "[]"
        conn.close()
        server.close()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
