"""Run the hostile submissions against plain `nbgrader autograde` and against this course's
grading command, and print which techniques succeed where.

    .venv/bin/python benchmarks/hostile_baseline.py [--only NAME ...] [--skip-plain]

Each technique is graded in a fresh temporary course that also holds a correct student
("victim") and a blank one. A technique *succeeds* if the hostile submission scores more
than the blank notebook, the victim's score changes, a course file changes (source,
release, config, other submissions; hashed before and after), or the run does not
finish. Plain nbgrader runs with nbgrader's own defaults (in-kernel scoring, no sandbox).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import Course  # noqa: E402
from tests.hostile import ASSIGNMENT, HOSTILE, notebook  # noqa: E402

# Would take the whole machine down without a memory limit: not run against plain nbgrader.
UNSAFE_WITHOUT_LIMITS = {"exhaust_memory"}


def course_files(root: Path) -> dict[str, str]:
    out = {}
    for sub in ("source", "release", "submitted"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file() and "hostile" not in p.parts:
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    cfg = root / "nbgrader_config.py"
    out["nbgrader_config.py"] = hashlib.sha256(cfg.read_bytes()).hexdigest()
    return out


def scores_from_db(root: Path) -> dict[str, float]:
    code = (
        "import json,sys\nfrom nbgrader.api import Gradebook\n"
        f"gb = Gradebook('sqlite:///{root}/gradebook.db')\n"
        "out = {}\n"
        "for s in ('victim', 'blank', 'hostile'):\n"
        "    try:\n"
        f"        out[s] = gb.find_submission('{ASSIGNMENT}', s).score\n"
        "    except Exception as e:\n"
        "        out[s] = None\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        import json

        return json.loads(proc.stdout.strip().splitlines()[-1])
    except Exception:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?"}


BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_one(name: str, mode: str, timeout: float) -> dict:
    base = Path(tempfile.mkdtemp(prefix=f"hostile-{mode}-"))
    course = Course.create(base, [ASSIGNMENT])
    course.submit("victim", ASSIGNMENT, course.solved(ASSIGNMENT))
    course.submit("blank", ASSIGNMENT, course.release_nb(ASSIGNMENT))
    course.submit("hostile", ASSIGNMENT, notebook(course, name))
    root = course.root
    if mode == "plain":
        # nbgrader's defaults: drop this course's own pipeline from the config.
        (root / "nbgrader_config.py").write_text(
            'c = get_config()\nc.CourseDirectory.root = "."\nc.Execute.timeout = 30\n'
            "c.OverwriteCells.add_missing_cells = True\n"
        )
    subprocess.run(
        [
            str(Path(sys.executable).parent / "nbgrader"),
            "generate_assignment",
            ASSIGNMENT,
            "--force",
        ],
        cwd=root,
        capture_output=True,
        timeout=300,
        env=ENV,
    )
    before = course_files(root)
    start = time.monotonic()
    if mode == "plain":
        cmd = [
            str(Path(sys.executable).parent / "nbgrader"),
            "autograde",
            ASSIGNMENT,
            "--create",
            "--force",
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "autograder.cli",
            "--course-dir",
            str(root),
            "grade",
            ASSIGNMENT,
            "--no-feedback",
        ]
    try:
        proc = subprocess.run(
            cmd, cwd=root, capture_output=True, text=True, timeout=timeout, env=ENV
        )
        finished, rc = True, proc.returncode
    except subprocess.TimeoutExpired:
        finished, rc = False, None
    elapsed = time.monotonic() - start
    time.sleep(10 if name == "fork_survivor" else 0)  # let a survivor do its damage
    after = course_files(root)
    scores = scores_from_db(root)
    code = ""
    if mode == "course":  # what the grader recorded about the hostile submission
        import json
        import sqlite3

        with contextlib.suppress(Exception):
            db = sqlite3.connect(str(root / ".autograder" / "outcomes.sqlite"))
            row = db.execute("SELECT outcome FROM outcomes WHERE student = 'hostile'").fetchone()
            db.close()
            code = json.loads(row[0]).get("code") or "" if row else ""
    changed = sorted(k for k in before if before.get(k) != after.get(k))
    hostile, blank, victim = scores.get("hostile"), scores.get("blank"), scores.get("victim")
    gained = hostile is not None and blank is not None and hostile > blank
    victim_ok = victim == 13.0
    success = gained or not victim_ok or bool(changed) or not finished
    shutil.rmtree(base, ignore_errors=True)
    return {
        "name": name,
        "mode": mode,
        "success": success,
        "hostile": hostile,
        "blank": blank,
        "victim": victim,
        "changed": changed[:3],
        "finished": finished,
        "rc": rc,
        "code": code,
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--skip-course", action="store_true")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    names = args.only or list(HOSTILE)
    modes = [
        m for m, skip in (("plain", args.skip_plain), ("course", args.skip_course)) if not skip
    ]
    print(f"{'technique':26s} " + " ".join(f"{m:>44s}" for m in modes))
    for name in names:
        cells = []
        for mode in modes:
            if mode == "plain" and name in UNSAFE_WITHOUT_LIMITS:
                cells.append("not run (no memory limit)")
                continue
            r = run_one(name, mode, args.timeout)
            verdict = "SUCCEEDS" if r["success"] else "defeated"
            detail = f"h={r['hostile']} v={r['victim']}"
            if r["changed"]:
                detail += " files!"
            if not r["finished"]:
                detail += " hung"
            if r.get("code"):
                detail += f" [{r['code']}]"
            cells.append(f"{verdict} ({detail})")
        print(f"{name:26s} " + " ".join(f"{c:>44s}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
