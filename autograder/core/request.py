"""A grading run as asked for (:class:`GradeRequest`), and what every job of it shares
(:class:`Settings`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class GradeRequest:
    """One grading run: which submissions, graded how.

    Built once by :func:`autograder.course.grade` (which also imports submissions and
    writes the CSV) and handed to :func:`autograder.batch.coordinator.grade`. Its defaults
    are the command line's and :func:`~autograder.course.grade`'s.

    `assignments`: graded in one run, from one queue of submissions. `students`: only
    these (each once, in order; default: everyone who submitted). `jobs`: parallel workers
    (default: one more than the cores). `timeout`: CPU seconds a cell may use (default:
    the course's ``Execute.timeout``); `wall_timeout`: wall seconds a cell may take
    (default: five times that, at least a minute). `force`: grade again what an earlier
    run graded and has not changed since. `progress`: show a progress bar (default: only
    on a terminal). `cluster`: grade on a Dask cluster, ``tcp://HOST:8786`` (a running
    scheduler) or ``local:N`` (N Dask workers started on this machine); default: the
    ``AUTOGRADER_CLUSTER`` environment variable, else ``c.Autograder.cluster`` in
    nbgrader_config.py, else this machine's own workers.
    """

    course_dir: Path
    assignments: tuple[str, ...]
    students: tuple[str, ...] | None = None
    feedback: bool = True
    jobs: int | None = None
    timeout: float | None = None
    wall_timeout: float | None = None
    force: bool = False
    progress: bool | None = None
    cluster: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "course_dir", Path(self.course_dir).resolve())
        object.__setattr__(self, "assignments", tuple(self.assignments))
        if self.students is not None:
            object.__setattr__(self, "students", tuple(self.students))
        if not self.assignments:
            raise ValueError("a grading run needs at least one assignment")


@dataclass(frozen=True)
class Settings:
    """What every job of one grading run shares; sent to each worker as JSON."""

    course_dir: str
    assignment: str
    feedback: bool = True
    cpu_limit: float = 120.0  # CPU seconds per cell
    wall_limit: float = 600.0  # wall seconds per cell (catches waiting without computing)
    interrupt_grace_cpu: float = 2.0
    interrupt_grace_wall: float = 20.0
    forkserver: str | None = None  # fork server socket; None: ordinary kernels
    kernel_dir: str | None = None  # holds kernels/<name>/kernel.json for the fork server
    kernel_threads: int = 1  # intra-op threads per kernel (one kernel per core)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Settings:
        return cls(**data)

    @property
    def nbclient_timeout(self) -> int:
        """nbclient's own (wall-clock) cell timeout: a last resort above all our limits."""
        return int(self.wall_limit + self.interrupt_grace_wall + 60)
