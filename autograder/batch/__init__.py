"""Grading a whole class with nbgrader: in parallel, with warm kernels, nothing lost.

:func:`autograder.course.grade` (and so ``autograder grade``) builds one
:class:`~autograder.core.request.GradeRequest` and runs it through here. What the engine
shares with the course facade (the :class:`~autograder.core.outcome.Outcome`, the run's
settings, nbgrader's plumbing, the submission checks and the failure classifier) is in
:mod:`autograder.core`; nothing here imports :mod:`autograder.course`.

- :mod:`.coordinator` plans the run (:func:`.coordinator.grade`, for one assignment or
  several, every submission in one queue): prepares the gradebook, records submissions that
  cannot be graded at all (invalid JSON, another assignment's notebook, ...), skips what
  an earlier run graded and has not changed since (:mod:`.store`), hands the rest to an
  executor, records each outcome as it arrives, and shows progress (:mod:`.progress`).
- :mod:`.executor` defines the :class:`~.executor.Executor` interface (hand it settings
  and (assignment, student) jobs, read outcomes back in any order) and
  :class:`~.executor.LocalExecutor`: worker processes on this machine (one more than the
  cores). A distributed engine implements the same interface and runs
  :class:`~.worker.Grader` wherever the course directory is visible.
- :mod:`.worker` grades one submission at a time with nbgrader's own Autograde converter
  and feedback generator; its Execute preprocessor is :class:`~.execution.WatchedExecute`
  (cell limits in kernel CPU time, :mod:`.execution`), and its gradebook transactions
  are serialized machine-wide (:mod:`.gradebook`). Each submission's state (its
  sandbox, its audit FIFO, its notebooks' runs) travels in one
  :class:`~.execution.SubmissionContext`, from the worker to the Execute preprocessor
  and on to the kernel provisioner.
- :mod:`.tamper` names what a graded submission tampered with (checks changed at run
  time, locked or test cells edited, reads outside its directory reported by the
  kernel's audit hook, :mod:`.audit`), for the outcome, the summary, the CSV and a banner
  on its feedback pages.
- :mod:`.forkserver` keeps an interpreter that has imported torch, matplotlib and
  ipykernel, and forks a fresh kernel per submission (and, once, as it starts, the
  workers' parent, which inherits torch and matplotlib); :mod:`.provisioner` is the
  jupyter_client kernel provisioner through which nbclient starts, watches, signals and
  kills those kernels. :mod:`.processes` holds the process helpers both the fork server
  and the workers use.

The kernel sandbox (:mod:`.sandbox`) is applied by :func:`.forkserver.prepare_child`, in
the forked child, before ipykernel runs, from the fields of the spawn request that
:class:`~.provisioner.ForkProvisioner` sends (user, private directory, namespaces,
limits), and so is the audit hook (:func:`.audit.install`, after the sandbox, before
ipykernel). The provisioner is the one place that decides how a kernel is started.

Run state lives in ``<course>/.autograder/``: ``outcomes.sqlite`` (one row per
submission) and ``logs/<assignment>/`` (or ``logs/all/`` for several assignments in one
run: workers, fork server, kernels' own output).
"""
