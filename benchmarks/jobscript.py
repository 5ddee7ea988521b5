"""Job scripts: render time of a big Pod, and the script's overhead around a container.

    .venv/bin/python benchmarks/jobscript.py [--repeat 20] \
        [--json benchmarks/results/jobscript.json]

1. ``render()`` of a Pod with 50 containers and 100 volumes (emptyDirs, ConfigMaps with five
   200-byte keys, Secrets, downwardAPI), each container with 10 env variables and 2 mounts.
   Target: under 5 ms (median).
2. Wall time of a container that does nothing (``true``), run by the job script with bash,
   versus the same runtime invoked directly with the same essential flags. Target: overhead
   under 10 % or 0.2 s. Runs for real with the Apptainer and Podman test services
   (ci/services/apptainer.sh, podman.sh); a runtime that is not set up is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from flashlink.jobscript import parse_config, render  # noqa: E402
from flashlink.kube import ConfigMap, RetrievedPodData, Secret, parse_pod  # noqa: E402
from servicekit import ServiceUnavailableError, start  # noqa: E402
from servicekit._service import WORK  # noqa: E402

IMAGE = "flashlink-test"


def big_request() -> RetrievedPodData:
    volumes: list[dict[str, Any]] = []
    config_maps, secrets = [], []
    for i in range(100):
        kind = i % 4
        if kind == 0:
            volumes.append({"name": f"v{i}", "emptyDir": {}})
        elif kind == 1:
            volumes.append({"name": f"v{i}", "configMap": {"name": f"cm{i}"}})
            data = {f"k{j}": "x" * 200 for j in range(5)}
            config_maps.append(
                ConfigMap.model_validate({"metadata": {"name": f"cm{i}"}, "data": data})
            )
        elif kind == 2:
            volumes.append({"name": f"v{i}", "secret": {"secretName": f"s{i}"}})
            secrets.append(
                Secret.model_validate({"metadata": {"name": f"s{i}"}, "data": {"t": "dG9rZW4="}})
            )
        else:
            item = {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
            volumes.append({"name": f"v{i}", "downwardAPI": {"items": [item]}})
    containers = [
        {
            "name": f"c{i}",
            "image": "busybox:1.36",
            "command": ["sh", "-c", "echo $(E0)"],
            "env": [{"name": f"E{j}", "value": f"value {j} $(E0)"} for j in range(10)],
            "volumeMounts": [
                {"name": f"v{(2 * i + j) % 100}", "mountPath": f"/m/{j}"} for j in range(2)
            ],
        }
        for i in range(50)
    ]
    pod = parse_pod(
        {
            "metadata": {"name": "big", "uid": "b"},
            "spec": {"containers": containers, "volumes": volumes},
        }
    )
    return RetrievedPodData.from_pod(pod, config_maps, secrets)


def bench_render(repeat: int) -> dict[str, float]:
    request = big_request()
    render(request)  # warm up imports and caches
    samples, cpu = [], []
    for _ in range(repeat * 10):
        t0, c0 = time.perf_counter(), time.process_time()
        job = render(request)
        samples.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    # CPU time too: on a shared 2-core machine the wall time also measures the neighbours
    return {
        "median_ms": statistics.median(samples) * 1000,
        "p90_ms": sorted(samples)[int(len(samples) * 0.9)] * 1000,
        "cpu_median_ms": statistics.median(cpu) * 1000,
        "load_average": os.getloadavg()[0],
        "script_kib": len(job.text.encode()) / 1024,
    }


def _time(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - t0


def bench_overhead(runtime: str, repeat: int) -> dict[str, float] | None:
    work = WORK / "run" / f"bench-jobscript-{os.getpid()}"
    try:
        service = start(runtime, work / runtime)
    except ServiceUnavailableError as exc:
        print(f"{runtime}: skipped ({exc})", file=sys.stderr)
        return None
    try:
        if runtime == "apptainer":
            image = service["TEST_IMAGE_SIF"]
            config = {"apptainer": {"executable": service["APPTAINER"]}}
            direct = [service["APPTAINER"], "exec", "--containall", "--cleanenv", image, "true"]
        else:
            image = service["TEST_IMAGE_PODMAN"]
            config = {
                "runtime": "podman",
                "podman": {"executable": service["PODMAN"], "network": "none"},
            }
            direct = [
                service["PODMAN"],
                "run",
                "--rm",
                "--network=none",
                "--entrypoint",
                '["true"]',
                image,
            ]
        config["images"] = {"overrides": {IMAGE: image}}
        pod = parse_pod(
            {
                "metadata": {"name": "noop", "uid": "n"},
                "spec": {"containers": [{"name": "main", "image": IMAGE, "command": ["true"]}]},
            }
        )
        text = render(pod, parse_config(config)).text
        with tempfile.TemporaryDirectory(dir=WORK / "run") as tmp:
            cwd = Path(tmp)
            (cwd / "job.sh").write_text(text)
            _time(direct, cwd)  # warm caches
            _time(["bash", "job.sh"], cwd)
            direct_s = [_time(direct, cwd) for _ in range(repeat)]
            script_s = [_time(["bash", "job.sh"], cwd) for _ in range(repeat)]
        d, s = statistics.median(direct_s), statistics.median(script_s)
        return {
            "direct_s": d,
            "script_s": s,
            "overhead_s": s - d,
            "overhead_pct": 100 * (s - d) / d,
        }
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {"render_50_containers_100_volumes": bench_render(args.repeat)}
    for runtime in ("apptainer", "podman"):
        results[f"noop_container_{runtime}"] = bench_overhead(runtime, args.repeat)
    r = results["render_50_containers_100_volumes"]
    print(
        f"render, 50 containers + 100 volumes: median {r['median_ms']:.2f} ms wall, "
        f"{r['cpu_median_ms']:.2f} ms CPU, p90 {r['p90_ms']:.2f} ms (target < 5 ms), "
        f"script {r['script_kib']:.0f} KiB, load average {r['load_average']:.1f}"
    )
    for runtime in ("apptainer", "podman"):
        o = results[f"noop_container_{runtime}"]
        if o is not None:
            print(
                f"{runtime:9s} no-op container: direct {o['direct_s']:.3f} s, job script "
                f"{o['script_s']:.3f} s, overhead {o['overhead_s']:+.3f} s "
                f"({o['overhead_pct']:+.1f} %)"
                " (target < 10 % or 0.2 s)"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
