"""cluster: the Dask cluster stages run on."""

from __future__ import annotations

import os

from pydantic import Field

from webli.pipeline.sections.base import Section


class ClusterConfig(Section):
    """The Dask cluster: a LocalCluster unless a scheduler address is given."""

    scheduler: str | None = Field(None, description="tcp://HOST:PORT of an existing scheduler")
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    memory_limit: str = Field("auto", description="per LocalCluster worker, e.g. '4GiB'")
    task_retries: int = Field(2, ge=0, description="times a failed shard task is retried")
    dashboard: bool = Field(False, description="serve the Dask dashboard on 127.0.0.1:8787")
