"""Held-out fidelity of a flash model set: flash the reference's own events, then validate.

    .venv/bin/python benchmarks/flash_fidelity.py --samples DIR [--models DIR] [--family auto]
        [--only test_Bu,unseen_bbbar] [--workers 2] [--out DIR]
        [--json benchmarks/results/flash_fidelity.json]

``--samples`` holds, per sample, ``<name>.events.parquet`` (``flashlink sim generate``) and
``<name>/`` (``flashlink sim detailed`` of those events): the held-out samples of
docs/flash.md ("Regenerating the shipped set"). For each sample this runs exactly the users'
commands, ``flashlink sim flash`` on the same generated events and ``flashlink sim validate``
against the reference (``--decay Bu2JpsiK`` on the B+ samples, ``--busy`` on full events),
then prints one row per sample against issue 7's criteria (W1 <= 0.02, classifier two-sample
AUC <= 0.55 per model, efficiencies within 2 sigma, pull widths within 10 %, B mass mean and
width within 5 %) and writes every sample's summary and per-model AUCs to the JSON.
``unseen_bbbar`` (full Pythia b-bbar events) is the process never used in training.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

SAMPLES = (
    "test_Bu",
    "unseen_bbbar",
    "test_minbias",
    "test2_minbias",
    "test2_pi",
    "test2_K",
    "test2_p",
    "test2_mu",
    "test2_e",
)
FLASHLINK = str(Path(sys.executable).parent / "flashlink")
W1_MAX = 0.02


def _options(name: str) -> list[str]:
    if name.endswith("bbbar"):
        return ["--decay", "Bu2JpsiK", "--busy"]
    if name.endswith("_Bu"):
        return ["--decay", "Bu2JpsiK"]
    return []


def _run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("a") as handle:
        done = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}); see {log}")
    return time.perf_counter() - t0


def one_sample(name: str, args: argparse.Namespace) -> dict[str, Any]:
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    log.write_text("")
    flash = [FLASHLINK, "sim", "flash", str(args.samples / f"{name}.events.parquet")]
    flash += [str(out / "flash"), "--seed", str(args.seed), "--family", args.family]
    if args.models:
        flash += ["--models", str(args.models)]
    t_flash = _run(flash, log)
    validate = [FLASHLINK, "sim", "validate", str(out / "flash"), str(args.samples / name)]
    validate += [str(out / "report"), "--label", f"{name} ({args.family})", *_options(name)]
    validate += ["--seed", str(args.seed)]
    t_validate = _run(validate, log)
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    features = {
        f"{model}.{column}": values
        for model, info in metrics["models"].items()
        for column, values in info.get("features", {}).items()
    }
    w1 = {k: v["w1"] for k, v in features.items()}
    worst = max(w1, key=lambda k: w1[k])
    pulls = {
        k: v["rel_diff"]
        for k, v in metrics["pulls"].items()
        if isinstance(v, dict) and "rel_diff" in v
    }
    worst_pull = max(pulls, key=lambda k: abs(pulls[k]))
    eff = metrics["efficiency"]["reconstructed"]
    row: dict[str, Any] = {
        "sample": name,
        "median_w1": statistics.median(w1.values()),
        "max_w1": {"feature": worst, "w1": w1[worst]},
        "w1_within": sum(v <= W1_MAX for v in w1.values()),
        "w1_within_2x_floor": sum(
            v["w1"] <= max(W1_MAX, 2 * v["w1_floor"]) for v in features.values()
        ),
        "features": len(w1),
        "auc": {m: info["c2st"]["auc"] for m, info in metrics["models"].items()},
        "eff_within_2sigma": eff["within_2sigma"],
        "eff_bins": eff["bins"],
        "pulls": pulls,
        "worst_pull": {"variable": worst_pull, "rel_diff": pulls[worst_pull]},
        "checks": metrics.get("checks", {}),
        "seconds": {"flash": round(t_flash, 1), "validate": round(t_validate, 1)},
        "report": str(out / "report" / "index.html"),
    }
    mass = metrics.get("mass_peak")
    if mass:
        row["mass"] = {
            "mean_rel_diff": mass["mean_rel_diff"],
            "mean_rel_diff_err": mass.get("mean_rel_diff_err"),
            "width_rel_diff": mass["width_rel_diff"],
            "width_rel_diff_err": mass.get("width_rel_diff_err"),
            "flash": mass["flash"]["matched"],
            "ref": mass["ref"]["matched"],
        }
    return row


def _print(rows: list[dict[str, Any]]) -> None:
    head = (
        "| sample | median W1 | max W1 (feature) | W1 <= 0.02 | C2ST AUC per model | "
        "eff. bins within 2 sigma | worst pull-width diff | B mass mean / width diff (cands) |"
    )
    print(head)
    print("|" + " --- |" * 8)
    for r in rows:
        aucs = ", ".join(f"{m} {a:.2f}" for m, a in r["auc"].items())
        mass = r.get("mass")
        mass_text = (
            f"{mass['mean_rel_diff']:+.4f} / {mass['width_rel_diff']:+.3f} "
            f"+- {mass['width_rel_diff_err'] or float('nan'):.3f} ({mass['flash']}/{mass['ref']})"
            if mass
            else "-"
        )
        print(
            f"| {r['sample']} | {r['median_w1']:.3f} | {r['max_w1']['w1']:.3f} "
            f"({r['max_w1']['feature']}) | {r['w1_within']}/{r['features']} "
            f"({r['w1_within_2x_floor']} within 2x floor) | {aucs} | "
            f"{r['eff_within_2sigma']:.2f} of {r['eff_bins']} | "
            f"{r['worst_pull']['rel_diff']:+.3f} ({r['worst_pull']['variable']}) | {mass_text} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=None, help="default: the shipped set")
    parser.add_argument("--family", default="auto", help="auto, mlp, flow or e.g. covariance=mlp")
    parser.add_argument("--only", default=",".join(SAMPLES))
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/flashlink-fidelity"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    missing = [
        n
        for n in names
        if not (args.samples / f"{n}.events.parquet").exists() or not (args.samples / n).is_dir()
    ]
    if missing:
        parser.error(f"--samples {args.samples} lacks {missing} (<name>.events.parquet + <name>/)")
    load_before = os.getloadavg()
    with ThreadPoolExecutor(args.workers) as pool:
        rows = list(pool.map(lambda n: one_sample(n, args), names))
    record = {
        "models": str(args.models or "shipped"),
        "family": args.family,
        "seed": args.seed,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "samples": rows,
    }
    _print(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
