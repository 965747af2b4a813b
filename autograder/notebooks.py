"""Reading and writing course notebooks: solutions, answer cells, outputs."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read(path: Path | str) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def write(nb: nbformat.NotebookNode, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def grade_id(cell) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def cell_by_id(nb, gid: str):
    for cell in nb.cells:
        if grade_id(cell) == gid:
            return cell
    raise KeyError(f"no cell with grade_id {gid!r}")


def strip_markers(source: str) -> str:
    """The instructor's solution code as a student would write it (markers removed)."""
    lines = [
        line
        for line in source.splitlines()
        if not line.strip().startswith(("### BEGIN SOLUTION", "### END SOLUTION"))
    ]
    return "\n".join(lines)


def solutions(source_nb) -> dict[str, str]:
    """grade_id -> solution code of each solution cell of an instructor notebook."""
    return {
        grade_id(c): strip_markers(c.source)
        for c in source_nb.cells
        if (c.get("metadata", {}).get("nbgrader") or {}).get("solution")
    }


def fill(release_nb, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of a release notebook with the given answer cells replaced."""
    nb = copy.deepcopy(release_nb)
    missing = set(answers)
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid in answers:
            cell.source = answers[gid]
            missing.discard(gid)
    if missing:
        raise KeyError(f"no answer cells {sorted(missing)}")
    return nb


def plain(text: str) -> str:
    return _ANSI.sub("", text)


def cell_messages(nb) -> dict[str, str]:
    """grade_id -> all text a cell printed (stdout, stderr, errors), ANSI colours removed."""
    out: dict[str, str] = {}
    for cell in nb.cells:
        gid = grade_id(cell)
        if not gid or cell.cell_type != "code":
            continue
        parts = []
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                parts.append(o.text)
            elif o.output_type == "error":
                parts.append("\n".join(o.traceback) or f"{o.ename}: {o.evalue}")
        out[gid] = plain("".join(p if p.endswith("\n") else p + "\n" for p in parts))
    return out
