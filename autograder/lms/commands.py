"""The command line's LMS commands: ``collect``, ``roster import``, ``export``, ``feedback``.

:func:`add` puts them on the ``autograder`` parser; :func:`run` runs the one parsed (the
options' defaults are read from the functions they call, as the rest of the command line
does).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from . import layouts

COMMANDS = ("collect", "roster", "export", "feedback")


def _default(function, name: str):
    return inspect.signature(function).parameters[name].default


def _ids(pairs: list[str]) -> dict[str, str]:
    ids = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise ValueError(
                f"--assignment-id {pair!r}: expected NAME=ID, e.g. 01_derivatives=4567"
            )
        ids[name] = value
    return ids


def add(sub) -> None:
    """Add the LMS commands to the command line's subparsers."""
    from . import export, feedback

    examples = "; ".join(f"{k}: {v}" for k, v in layouts.EXAMPLES.items())
    c = sub.add_parser(
        "collect",
        help="bring an LMS download (Canvas, Moodle, Blackboard) into submitted/",
        description="Files are recognised by their names (" + examples + "). Students are "
        "matched to the imported roster by the LMS's id. Every file not collected is named "
        "with the reason; a download that yields nothing exits 2.",
    )
    c.add_argument("assignment")
    c.add_argument("download", type=Path, help="the zip the LMS gave, or the folder it unpacks to")

    r = sub.add_parser("roster", help="import the class list into the gradebook")
    rsub = r.add_subparsers(dest="roster_command", required=True)
    ri = rsub.add_parser(
        "import",
        help="CSV with student_id, first_name, last_name, email, lms_id, login, section",
    )
    ri.add_argument("file", type=Path)

    e = sub.add_parser("export", help="grades in the files an LMS imports, and per question")
    e.add_argument("assignments", nargs="*", help="default: every assignment in the gradebook")
    e.add_argument("--lms", choices=export.FORMATS, default=_default(export.export, "lms"))
    e.add_argument(
        "--out", type=Path, dest="out_dir", help="output folder (default: <course>/export)"
    )
    e.add_argument(
        "--assignment-id",
        action="append",
        dest="ids",
        metavar="NAME=ID",
        help="the LMS's id of an assignment (Canvas assignment id, Blackboard column id)",
    )

    f = sub.add_parser(
        "feedback",
        help="regenerate the feedback pages from the gradebook (after hand grading) and "
        "pack them per assignment for the LMS",
    )
    f.add_argument("assignments", nargs="*", help="default: every autograded assignment")
    f.add_argument("--student", action="append", dest="students")
    f.add_argument("--lms", choices=export.FORMATS, default=_default(feedback.archive, "lms"))
    f.add_argument(
        "--no-regenerate",
        action="store_false",
        dest="regenerate",
        help="only pack the pages as they are",
    )


def run(args: argparse.Namespace) -> int:
    """Run the parsed LMS command; its exit status."""
    from .roster import RosterError

    try:
        return _run(args)
    except RosterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    course_dir = args.course_dir
    if args.command == "collect":
        from .collect import collect

        result = collect(course_dir=course_dir, assignment=args.assignment, download=args.download)
        print(result.summary())
        return 0
    if args.command == "roster":
        from .roster import import_roster

        students, others = import_roster(course_dir=course_dir, path=args.file)
        print(f"{len(students)} student(s) imported from {args.file} into the gradebook")
        if others:
            print(f"kept, not in this roster: {', '.join(others)}")
        return 0
    if args.command == "export":
        from .export import export

        written, notes = export(
            course_dir=course_dir,
            lms=args.lms,
            out_dir=args.out_dir,
            assignments=args.assignments or None,
            ids=_ids(args.ids),
        )
        for path in written:
            print(f"wrote {path}")
        for note in notes:
            print(f"note: {note}")
        return 0
    if args.command == "feedback":
        from .feedback import archive, regenerate

        status = 0
        names = args.assignments or None
        if args.regenerate:
            done = regenerate(course_dir=course_dir, assignments=names, students=args.students)
            print(f"feedback regenerated for {len(done.done)} submission(s)")
            for a, s, why in done.failed:
                print(f"feedback failed: {s} {a}: {why}")
                status = 1
        root = Path(course_dir).resolve() / "feedback"
        names = names or sorted({p.name for p in root.glob("*/*") if p.is_dir()})
        for a in names:
            path, notes = archive(course_dir=course_dir, assignment=a, lms=args.lms)
            print(f"wrote {path}")
            for note in notes:
                print(f"note: {note}")
        return status
    raise ValueError(f"unknown command {args.command}")  # pragma: no cover
