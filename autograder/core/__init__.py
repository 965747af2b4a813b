"""What the course facade (:mod:`autograder.course`) and the batch engine
(:mod:`autograder.batch`) share, as public modules:

- :mod:`.outcome`: :class:`~.outcome.Outcome`, what happened to one submission, and its
  JSON form (outcome store, worker messages);
- :mod:`.request`: :class:`~.request.GradeRequest`, one grading run as asked for, and
  :class:`~.request.Settings`, what every job of a run shares (sent to the workers);
- :mod:`.nbgrader_io`: nbgrader's configuration, API object and gradebook;
- :mod:`.submissions`: importing submissions, and what makes one ungradable before
  anything runs;
- :mod:`.runs`: what happened while a submission's notebooks ran (cells stopped, a
  kernel that died);
- :mod:`.failures`: one classifier from nbgrader's result and those runs to a
  (code, reason) pair.

Nothing here imports :mod:`autograder.course`, :mod:`autograder.batch`,
:mod:`autograder.judge` or :mod:`autograder.cli`.
"""
