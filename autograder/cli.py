"""Command line: `autograder release | grade | lint | collect | roster | export | feedback | demo`.

Only parses arguments and calls the keyword-only functions of :mod:`autograder.course`
(and :mod:`autograder.demo`), so the command line and the Python API cannot drift: the
options' defaults are read from those functions' signatures.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from pathlib import Path

from . import __version__


def _default(function, name: str):
    """The default of `function`'s keyword `name`: the command line has none of its own."""
    return inspect.signature(function).parameters[name].default


def _parser() -> argparse.ArgumentParser:
    from . import course
    from .demo import run_demo

    p = argparse.ArgumentParser(
        prog="autograder", description="Release and grade the autograd course with nbgrader."
    )
    p.add_argument("--version", action="version", version=f"autograder {__version__}")
    p.add_argument(
        "--course-dir",
        type=Path,
        default=_default(course.grade, "course_dir"),
        help="nbgrader course directory (default: current directory)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser(
        "release", help="lint source/ and generate the student notebooks in release/"
    )
    r.add_argument(
        "assignments", nargs="*", help="assignments to release (default: all in source/)"
    )
    r.add_argument(
        "--no-solution-check",
        action="store_false",
        dest="check_solutions",
        default=_default(course.release, "check_solutions"),
        help="do not grade the instructor's solutions before releasing",
    )

    lint = sub.add_parser("lint", help="check the instructor notebooks for authoring mistakes")
    lint.add_argument("assignments", nargs="*")

    g = sub.add_parser("grade", help="autograde submissions; write gradebook, CSV and feedback")
    g.add_argument(
        "assignments",
        nargs="*",
        metavar="assignment",
        help="default: every assignment with submissions (several are graded in one run)",
    )
    g.add_argument(
        "--submissions",
        type=Path,
        default=_default(course.grade, "submissions"),
        help="folder in nbgrader layout (<student>/<assignment>/*.ipynb), or an LMS "
        "download from Canvas, Moodle or Blackboard (zip or folder; see `collect`)",
    )
    g.add_argument(
        "--student",
        action="append",
        dest="students",
        default=_default(course.grade, "students"),
        help="grade only this student",
    )
    g.add_argument(
        "--csv",
        type=Path,
        dest="csv_path",
        metavar="CSV",
        default=_default(course.grade, "csv_path"),
        help="where to write the grades CSV (default: grades.csv)",
    )
    g.add_argument(
        "--no-feedback",
        action="store_false",
        dest="feedback",
        default=_default(course.grade, "feedback"),
        help="skip the feedback HTML",
    )
    g.add_argument(
        "--jobs",
        type=int,
        default=_default(course.grade, "jobs"),
        help="parallel workers (default: one more than the CPU cores); on a cluster, the"
        " submissions each Dask worker grades at once (default: its thread count; for"
        " local:N, its share of the cores plus one)",
    )
    g.add_argument(
        "--cluster",
        default=_default(course.grade, "cluster"),
        metavar="ADDRESS",
        help="grade on a Dask cluster: a scheduler's address (tcp://HOST:8786) or local:N "
        "(N workers on this machine); default: $AUTOGRADER_CLUSTER, else "
        "c.Autograder.cluster in nbgrader_config.py, else this machine",
    )
    g.add_argument(
        "--force",
        action="store_true",
        default=_default(course.grade, "force"),
        help="grade again what an earlier run already graded",
    )

    from .lms import commands as lms_commands

    lms_commands.add(sub)  # collect, roster import, export, feedback

    e = sub.add_parser(
        "explain", help="why a submission got its grade: per question, limits, flags, logs"
    )
    e.add_argument("student")
    e.add_argument("assignment")

    d = sub.add_parser("demo", help="release the course and grade the bundled sample class")
    d.add_argument(
        "--work-dir",
        type=Path,
        default=_default(run_demo, "work_dir"),
        help="scratch course directory for the sample class (default: %(default)s)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    # jsonschema's optional IRI-format checker compiles a grammar on import (~2 s of CPU)
    # for a format no notebook schema uses: leave it out, as the grading workers do.
    sys.modules.setdefault("rfc3987_syntax", None)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from . import course
    from .lint import AuthoringError, lint_source

    try:
        if args.command == "lint":
            names = args.assignments or course.source_assignments(args.course_dir)
            problems = lint_source(args.course_dir.resolve(), names)
            for problem in problems:
                print(problem)
            print(f"{len(problems)} problem(s) in {len(names)} assignment(s)")
            return 1 if problems else 0
        if args.command == "release":
            for path in course.release(
                course_dir=args.course_dir,
                assignments=args.assignments,
                check_solutions=args.check_solutions,
            ):
                print(f"released {path}")
            return 0
        if args.command == "grade":
            from .report import exit_status, print_summary

            outcomes = course.grade(
                course_dir=args.course_dir,
                assignment=args.assignments,
                submissions=args.submissions,
                students=args.students,
                feedback=args.feedback,
                csv_path=args.csv_path,
                jobs=args.jobs,
                force=args.force,
                cluster=args.cluster,
            )
            print_summary(outcomes)
            return exit_status(outcomes)
        if args.command in ("collect", "roster", "export", "feedback"):
            from .lms import commands as lms_commands

            return lms_commands.run(args)
        if args.command == "explain":
            from .explain import explain

            print(
                explain(
                    course_dir=args.course_dir, student=args.student, assignment=args.assignment
                )
            )
            return 0
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(course_dir=args.course_dir, work_dir=args.work_dir)
    except AuthoringError as exc:
        print("Refused: the instructor notebooks have authoring mistakes:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
