"""The checking library the assignments' checks are built from.

It runs wherever a check runs: in the student's kernel for the visible tests, and in
the trusted grader (:mod:`autograder.judge`) when the checks run again against the
student's functions at grading time. It imports nothing from the judge or the batch
engine.
"""
