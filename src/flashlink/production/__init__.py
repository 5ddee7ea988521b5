"""Productions: a request becomes Pods on the plugin API, merged outputs and a report."""

from __future__ import annotations

__all__ = [
    "EmbeddedPlugin",
    "Job",
    "Journal",
    "Outputs",
    "PayloadSettings",
    "PluginCallError",
    "PluginClient",
    "Production",
    "ProductionError",
    "ProductionRequest",
    "RequestError",
    "Snapshot",
    "build_job_pod",
    "build_reference_pod",
    "check_pod_schema",
    "load_request",
    "merge_ntuples",
    "parse_request",
    "plan_jobs",
    "pod_phase",
    "report_path",
    "s3_secret",
    "software_binds",
    "state_root",
]

from flashlink.production.client import PluginClient, pod_phase
from flashlink.production.driver import Production, Snapshot
from flashlink.production.embedded import EmbeddedPlugin, software_binds
from flashlink.production.errors import PluginCallError, ProductionError, RequestError
from flashlink.production.journal import Journal
from flashlink.production.outputs import merge_ntuples, report_path
from flashlink.production.pods import (
    Job,
    PayloadSettings,
    build_job_pod,
    build_reference_pod,
    check_pod_schema,
    plan_jobs,
)
from flashlink.production.request import ProductionRequest, load_request, parse_request
from flashlink.production.storage import Outputs, s3_secret, state_root
