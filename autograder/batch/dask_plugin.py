"""The Dask worker plugin that prepares a worker to grade (see :mod:`.distributed`).

Kept apart from :mod:`.distributed` so that a local run never imports Dask.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from ..core.request import Settings
from .distributed import GradingSite


class GradingPlugin(WorkerPlugin):
    """Prepares a Dask worker to grade one run's submissions (see the module doc)."""

    def __init__(
        self,
        *,
        name: str,
        resource: str,
        settings: Settings,
        files: dict[str, bytes],
        assignments: list[str],
        job_timeout: float | None,
        wanted_env: dict[str, str],
        wanted_sandbox: dict[str, bool],
        sandbox_env: dict[str, str],
    ):
        self.name = name
        self.resource = resource
        self.settings = settings
        self.files = files
        self.assignments = assignments
        self.job_timeout = job_timeout
        self.wanted_env = wanted_env
        self.wanted_sandbox = wanted_sandbox
        self.sandbox_env = sandbox_env
        self.site: GradingSite | None = None  # on the worker

    def __getstate__(self):
        state = dict(self.__dict__)
        state["site"] = None
        return state

    async def setup(self, worker):
        # Checked before the plugin counts as registered, so before any task is sent: a
        # worker that cannot grade never declares the run's resource, which every task
        # of the run requires. Building the course copy and warming up take seconds:
        # done in a thread; the worker's tasks wait for it.
        import asyncio

        site = GradingSite(self, worker)
        self.site = site
        problem = await asyncio.to_thread(site.check)
        if problem:
            site.refuse(problem)
            return
        await worker.set_resources(**{self.resource: site.jobs})
        site.start()

    def teardown(self, worker):
        if self.site is not None:
            self.site.close()
            self.site = None
