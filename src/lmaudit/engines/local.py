"""The default engine: every pass runs in this process (index shards in worker processes)."""

from __future__ import annotations


class LocalEngine:
    """Run everything here. :func:`lmaudit.engines.on_engine` never wraps a model for it: the
    local path is the model's own ``generate`` and :func:`lmaudit.scoring.score.score_stream`."""

    name = "local"

    def executor(self, jobs: int):
        """A pool of ``jobs`` worker processes for independent CPU-bound tasks (index shards).

        spawn: a worker gets a clean interpreter (no copy of the caller's memory, no fork of
        threads), and imports only what its task needs.
        """
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))

    def provenance(self) -> dict:
        return {"name": self.name}
