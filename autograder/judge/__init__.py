"""The trusted judge: after a submission's notebook has run, each test cell's checks run
again in the grading process against the student's functions in the kernel, and the
verdict replaces the test cell's outputs. It never executes student code."""
