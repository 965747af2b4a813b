"""docs/diagnoses.md lists every diagnosis code the package can produce."""

from __future__ import annotations

import re

import torch

from autograder.assignments import a02
from autograder.checking import diagnose, jacobians
from tests import students
from tests.conftest import ROOT

DOC = ROOT / "docs" / "diagnoses.md"


def _codes_in_source() -> set[str]:
    """Every `Finding("<code>", …)` written in autograder/, plus the codes kept in tables
    (torch error hints, Jacobian error hints, the graph comparison's codes) and in 02's
    list of known wrong derivatives."""
    codes = set()
    for path in (ROOT / "autograder").rglob("*.py"):
        codes |= set(re.findall(r'Finding\(\s*"([a-z0-9_]+)"', path.read_text(encoding="utf-8")))
    codes |= {code for _, code, _ in diagnose.ERRORS}
    codes |= {code for _, code, _ in jacobians.ERROR_HINTS}
    codes |= {f"graph_{c}" for c in a02.GRAPH_ADVICE}
    x = torch.tensor([0.5, 2.0], dtype=torch.float64)
    codes |= {finding.code for finding, _ in a02.known_mistakes(x, a02.f_prime_reference(x))}
    return codes


def _documented() -> set[str]:
    """The codes of the tables' first column."""
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", DOC.read_text(encoding="utf-8"), re.MULTILINE))


def test_every_diagnosis_code_is_documented():
    """Does docs/diagnoses.md have a row for every code a check can report?"""
    codes = _codes_in_source()
    assert len(codes) > 40
    assert codes - _documented() == set()


def test_documented_codes_exist():
    """Does every row of docs/diagnoses.md name a code the package still has?"""
    assert _documented() - _codes_in_source() == set()


def test_every_row_shows_a_message():
    """Does every row show an example message with its own code?"""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `([a-z0-9_]+)` \|", line)
        if m:
            assert f"Likely cause [{m.group(1)}]" in line, line


def test_corpus_column_names_students_that_assert_the_code():
    """Does every simulated student a row names (`NN name`) exist, and expect that row's
    code in one of the cells it loses?"""
    corpora = {a[:2]: c for a, c in students.corpora().items()}
    named = 0
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `([a-z0-9_]+)` \|", line)
        if not m:
            continue
        for number, name in re.findall(r"(\d\d) `([a-z0-9_]+)`", line.rsplit("|", 2)[-2]):
            student = corpora[number].STUDENTS.get(name)
            assert student is not None, (m.group(1), number, name)
            assert m.group(1) in student.lost.values(), (m.group(1), number, name)
            named += 1
    assert named > 20
