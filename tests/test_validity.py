"""Do grades mean what they say on every draw of the hidden inputs?

Each simulated student's test cells run under 20 seeds (``AUTOGRADER_VALIDITY_SEEDS``
sets another count): a cell the student must lose fails under every seed, naming the
expected cause every time (or no cause, where none may be guessed); every other cell
passes under every seed.
"""

from __future__ import annotations

import os

import pytest

from tests.students import corpora
from tests.validity import run_corpus

CORPORA = corpora()
SEEDS = tuple(range(int(os.environ.get("AUTOGRADER_VALIDITY_SEEDS", "20"))))


@pytest.mark.slow
@pytest.mark.parametrize("assignment", sorted(CORPORA))
def test_every_student_gets_the_same_verdict_on_every_seed(assignment):
    """Does every wrong answer fail, with its cause, and every right one pass, on every
    seed?"""
    corpus = CORPORA[assignment]
    results = run_corpus(assignment, corpus.STUDENTS, SEEDS)
    problems = []
    for name, cells in results.items():
        student = corpus.STUDENTS[name]
        for gid, runs in cells.items():
            if gid in student.lost:
                passed = [s for s, r in zip(SEEDS, runs, strict=True) if r.passed]
                if passed:
                    problems.append(f"{name} {gid}: passed under seeds {passed[:5]}")
                    continue
                code = student.lost[gid]
                for seed, run in zip(SEEDS, runs, strict=True):
                    if code is not None and code not in run.codes:
                        problems.append(
                            f"{name} {gid} seed {seed}: named {list(run.codes)}, not {code}"
                            f" ({run.summary})"
                        )
                        break
                    if code is None and run.codes:
                        problems.append(
                            f"{name} {gid} seed {seed}: guessed {list(run.codes)} ({run.summary})"
                        )
                        break
            else:
                failed = [(s, r) for s, r in zip(SEEDS, runs, strict=True) if not r.passed]
                if failed:
                    seed, run = failed[0]
                    problems.append(
                        f"{name} {gid}: failed under {len(failed)} seed(s), e.g. {seed}: "
                        f"{run.summary} {list(run.codes)}"
                    )
    assert not problems, "\n".join(problems)


def test_students_run_even_after_this_process_used_openmp_threads():
    """Another test in this pytest worker may have run a parallel torch operation; a
    process forked from this one would then hang at its own first parallel operation
    (03's Jacobians are matrix products), so the students must not be forked from here."""
    import torch

    torch.set_num_threads(max(2, torch.get_num_threads()))
    big = torch.randn(600, 600)
    (big @ big).sin().sum()  # OpenMP's threads now run in this process
    corpus = CORPORA["03_vector_jacobian"]
    results = run_corpus("03_vector_jacobian", {"perfect": corpus.STUDENTS["perfect"]}, (0,), 120)
    runs = [run for cells in results["perfect"].values() for run in cells]
    assert runs and all(run.passed for run in runs), results
