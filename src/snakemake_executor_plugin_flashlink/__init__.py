"""Snakemake executor plugin ``flashlink``: each Snakemake job becomes a Pod submitted through the
flashlink/interLink plugin HTTP API (``/create``, ``/status``, ``/getLogs``, ``/delete``).

Snakemake 9 finds executor plugins by their top-level module name
(``snakemake_executor_plugin_<name>``), so this module ships in the flashlink distribution::

    snakemake --executor flashlink --flashlink-url http://127.0.0.1:4000 \\
        --flashlink-image ghcr.io/flashlink/payload:latest --jobs 50

The Pods are built by :func:`flashlink.production.snakemake.snakemake_job_pod`.
"""

# ruff: noqa: I002, UP045 - Snakemake builds its CLI from the field types at run time, so they
# must be real types (no postponed annotations) and Optional (argparse-dataclass reads it).

__all__ = ["Executor", "ExecutorSettings", "common_settings"]

import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from flashlink.production.client import PluginClient, pod_phase
from flashlink.production.errors import ProductionError
from flashlink.production.snakemake import snakemake_job_pod


@dataclass
class ExecutorSettings(ExecutorSettingsBase):  # type: ignore[misc]
    url: Optional[str] = field(
        default=None,
        metadata={
            "help": "URL of the flashlink/interLink plugin",
            "env_var": False,
            "required": True,
        },
    )
    image: str = field(
        default="ghcr.io/flashlink/payload:latest",
        metadata={"help": "the payload image of every job", "env_var": False},
    )
    site: str = field(
        default="local", metadata={"help": "plugin site (toleration pool.vk.io)", "env_var": False}
    )
    bind: Optional[str] = field(
        default=None,
        metadata={
            "help": "colon-separated host directories bound read-only into each job "
            "(the software, CVMFS-like)",
            "env_var": False,
        },
    )
    token: Optional[str] = field(
        default=None, metadata={"help": "bearer token of the plugin", "env_var": True}
    )


common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=False,  # the workdir is bound into each Pod (a shared filesystem)
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=True,
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=1,
)


class Executor(RemoteExecutor):  # type: ignore[misc]
    def __post_init__(self) -> None:
        settings = self.workflow.executor_settings
        if not settings.url:
            raise WorkflowError("--flashlink-url is required (the plugin's URL)")
        self.settings = settings
        self.client = PluginClient(settings.url, token=settings.token)
        self.workdir = str(Path.cwd().resolve())
        self.binds = tuple(b for b in (settings.bind or "").split(":") if b)
        self.logdir = Path(self.workdir) / ".snakemake" / "flashlink_logs"
        self.logdir.mkdir(parents=True, exist_ok=True)

    def run_job(self, job: JobExecutorInterface) -> None:
        name = f"smk-{job.name.replace('_', '-')}-{job.jobid}-{os.getpid()}"[:63].lower()
        mem = job.resources.get("mem_mb")
        try:
            pod = snakemake_job_pod(
                name=name,
                command=self.format_job_exec(job),
                image=self.settings.image,
                workdir=self.workdir,
                binds=self.binds,
                site=self.settings.site,
                cpus=max(1, int(job.threads)),
                mem_mb=int(mem) if mem else None,
            )
            self.client.create(pod)
        except ProductionError as exc:
            raise WorkflowError(f"submitting {job.name} as a Pod failed: {exc}") from exc
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=name, aux={"pod": pod}))

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        pods = [j.aux["pod"] for j in active_jobs]
        async with self.status_rate_limiter:
            try:
                statuses = self.client.status(pods)  # one call for every active job
            except ProductionError as exc:
                self.logger.warning(f"plugin status failed, retrying: {exc}")
                for j in active_jobs:
                    yield j
                return
        for j in active_jobs:
            pod = j.aux["pod"]
            status = statuses.get(pod["metadata"]["uid"])
            phase = pod_phase(status) if status else "Pending"
            if phase not in ("Succeeded", "Failed"):
                yield j
                continue
            log = self.logdir / f"{pod['metadata']['name']}.log"
            try:
                log.write_text(self.client.logs(pod, "snakemake"))
                self.client.delete(pod)
            except ProductionError as exc:
                log.write_text(f"(logs not available: {exc})\n")
            if phase == "Succeeded":
                self.report_job_success(j)
            else:
                self.report_job_error(
                    j, msg=f"Pod {pod['metadata']['name']} failed", aux_logs=[str(log)]
                )

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        for j in active_jobs:
            try:
                self.client.delete(j.aux["pod"])
            except ProductionError as exc:
                self.logger.warning(f"could not delete {j.external_jobid}: {exc}")
