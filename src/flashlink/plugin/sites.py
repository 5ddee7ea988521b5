"""Sites: the named backends a plugin fronts, and which one a pod goes to.

A pod selects a site with the node selector ``pool.vk.io: <site>`` or a toleration
``pool.vk.io=<site>`` (operator ``Equal``, any effect): the way Kueue's ResourceFlavors route
workloads to the pools of interLink virtual nodes. A pod that selects none goes to the default
site. Site names are checked here so the error names the field and lists the valid sites.
"""

from __future__ import annotations

__all__ = ["Site", "build_sites", "select_site"]

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flashlink.backends import Backend
from flashlink.backends.registry import create_backend
from flashlink.jobscript import RenderConfig
from flashlink.kube import Pod
from flashlink.plugin.config import PluginConfig
from flashlink.plugin.errors import BadRequestError

_log = logging.getLogger(__name__)


@dataclass
class Site:
    """One backend, its job-script config and where its job directories go."""

    name: str
    kind: str
    backend: Backend
    render: RenderConfig
    jobs_dir: Path
    reconcile_interval: float


def select_site(pod: Pod, sites: Sequence[str], default: str | None, key: str) -> str:
    """The site ``pod`` selects (see the module docstring); BadRequestError names the field."""
    valid = ", ".join(sites)
    chosen = pod.spec.node_selector.get(key)
    if chosen is not None:
        if chosen not in sites:
            raise BadRequestError(
                f"spec.nodeSelector.{key}: {chosen!r} is not a site of this plugin; "
                f"valid sites: {valid}"
            )
        return chosen
    named: list[tuple[int, str]] = [
        (i, t.value or "")
        for i, t in enumerate(pod.spec.tolerations)
        if t.key == key and (t.operator or "Equal") == "Equal"
    ]
    known = sorted({value for _, value in named if value in sites})
    if len(known) > 1:
        raise BadRequestError(
            f"spec.tolerations: the pod tolerates several sites ({', '.join(known)}) with "
            f"{key}; keep one, or select one with spec.nodeSelector.{key}"
        )
    if known:
        return known[0]
    if named:
        i, value = named[0]
        raise BadRequestError(
            f"spec.tolerations[{i}].value: {value!r} is not a site of this plugin; "
            f"valid sites: {valid}"
        )
    if default is None:
        raise BadRequestError(
            f"spec.tolerations: the pod selects no site and this plugin has no default_site; "
            f"add a toleration {key}=<site> (one of: {valid})"
        )
    return default


def build_sites(config: PluginConfig, state_dir: Path) -> dict[str, Site]:
    """Every configured site with its backend built (InvalidSiteConfigError when one is wrong)."""
    sites: dict[str, Site] = {}
    built: list[Backend] = []
    try:
        for name, site in sorted(config.site_configs().items()):
            render = config.render_config(name)
            backend = create_backend(
                site.kind, name, site.backend, state_dir=state_dir / "sites" / name
            )
            built.append(backend)
            sites[name] = Site(
                name=name,
                kind=site.kind,
                backend=backend,
                render=render,
                jobs_dir=site.jobs_dir or state_dir / "jobs" / name,
                reconcile_interval=site.reconcile_interval or config.reconcile_interval,
            )
            _log.info("site %s: %s backend, %s runtime", name, site.kind, render.runtime)
    except Exception:
        for backend in built:
            backend.close()
        raise
    return sites
