"""Results: the flat keys of `bench/results.json`, the table, and `bench/RESULTS.md`.

Each run (one N) is kept under `runs` and flattened into `<metric>_<N>` keys; the unsuffixed
keys (`writes_per_cr_create`, `idle_writes`, ...) come from the largest N. RESULTS.md is
regenerated between two markers, so notes written around the table survive new runs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cpu import busy_seconds

Run = dict[str, Any]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine_info(kubernetes_version: str) -> dict[str, Any]:
    """What the numbers depend on (2 shared cores make every timing noisy)."""
    meminfo = Path("/proc/meminfo").read_text().split()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "")
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "python": platform.python_version(),
        "kubernetes": kubernetes_version,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def _get(run: Run, path: str) -> Any:
    value: Any = run
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(frozen=True)
class Metric:
    """One row: where the value is in a run, its flat key, the goal and how to check it."""

    key: str
    label: str
    path: str
    goal: str = ""
    ok: Callable[[float, Run], bool] | None = None
    only_n: int | None = None
    """The goal applies at this N only (e.g. Ready ≤ 60 s at 1000)."""


def _children_bound(run: Run, extra: int = 2) -> float:
    return float(_get(run, "create.children_per_cr") or 0) + extra


def derive(run: Run) -> Run:
    """Values computed from others in the same run: the ratios to the floor and to the
    original, RSS per CR."""
    ready, floor = _get(run, "create.ready_seconds"), _get(run, "floor.ready_seconds")
    derived: Run = {}
    if ready and floor:
        derived["ready_ratio_to_floor"] = round(ready / floor, 2)
    original = _get(run, "peer.create.ready_seconds")
    if ready and original:  # our all Ready (status written) against its all available
        derived["ready_ratio_to_original"] = round(ready / original, 2)
    ratios = [p["ratio"] for p in run.get("pairs") or []]
    if len(ratios) > 1:  # the machine's speed drifts: the median of several pairs
        derived["ready_ratio_to_floor"] = round(statistics.median(ratios), 2)
        derived["ready_ratios"] = ", ".join(f"{r:g}" for r in ratios)
    cpu_ratios = [p["cpu_ratio"] for p in run.get("pairs") or [] if "cpu_ratio" in p]
    if cpu_ratios:
        derived["cpu_ratio_to_floor"] = round(statistics.median(cpu_ratios), 2)
        derived["cpu_ratios"] = ", ".join(f"{r:g}" for r in cpu_ratios)
    points = {int(k): v for k, v in (_get(run, "memory_at.rss_mib_at") or {}).items()}
    if _get(run, "memory.rss_mib_n") is not None:
        points[int(run["n"])] = run["memory"]["rss_mib_n"]
    if len(points) >= 2:
        low, high = min(points), max(points)
        derived["rss_kib_per_cr"] = round((points[high] - points[low]) * 1024 / (high - low), 1)
    return {**run, "derived": derived}


METRICS = (
    Metric("ready_seconds", "create burst: seconds until all Ready", "create.ready_seconds"),
    Metric("floor_ready_seconds", "floor: same children created directly, all available",
           "floor.ready_seconds"),
    Metric("ready_ratio_to_floor", "create burst: all Ready / floor (median of the pairs)",
           "derived.ready_ratio_to_floor", "≤ 1.3", lambda v, _: v <= 1.3),
    Metric("ready_ratios", "create burst: all Ready / floor, each pair (floor, then operator)",
           "derived.ready_ratios"),
    Metric("cpu_ratio_to_floor", "create burst: CPU seconds of all processes / floor's "
           "(median of the pairs)", "derived.cpu_ratio_to_floor"),
    Metric("cpu_ratios", "create burst: CPU / floor's CPU, each pair", "derived.cpu_ratios"),
    Metric("deployments_available_seconds", "create burst: seconds until all Deployments "
           "available", "create.deployments_available_seconds"),
    Metric("children_applied_seconds", "create burst: seconds until all children exist",
           "create.children_applied_seconds"),
    Metric("requests_per_cr_create", "create burst: requests per new CR",
           "create.requests_per_cr", "≤ children + 2", lambda v, run: v <= _children_bound(run)),
    Metric("writes_per_cr_create", "create burst: writes per new CR", "create.writes_per_cr"),
    Metric("children_per_cr", "children per CR", "create.children_per_cr"),
    Metric("reconciles_per_cr_create", "create burst: reconciles per new CR",
           "create.reconciles_per_cr"),
    Metric("operator_cpu_seconds_create", "create burst: operator CPU seconds",
           "create.operator_cpu_seconds"),
    Metric("conflicts", "409 Conflict answers (whole run)", "conflicts", "0",
           lambda v, _: v == 0),
    Metric("idle_writes", "idle: writes during a full resync", "idle.writes", "0",
           lambda v, _: v == 0),
    Metric("idle_reads", "idle: reads during a full resync", "idle.reads"),
    Metric("restart_writes", "restart: writes", "restart.writes", "0", lambda v, _: v == 0),
    Metric("restart_sync_seconds", "restart: seconds to caches synced (/readyz)",
           "restart.sync_seconds", "≤ 10 s", lambda v, _: v <= 10),
    Metric("restart_reconciled_seconds", "restart: seconds to all reconciled",
           "restart.all_reconciled_seconds"),
    Metric("spec_change_seconds", "spec change: seconds until rolled out and Ready",
           "spec_change.converged_seconds"),
    Metric("spec_change_image_seconds", "spec change: seconds until every Deployment has it",
           "spec_change.image_applied_seconds"),
    Metric("spec_change_requests_per_cr", "spec change: requests per CR",
           "spec_change.requests_per_cr", "≤ 3", lambda v, _: v <= 3),
    Metric("spec_change_writes_per_cr", "spec change: writes per CR",
           "spec_change.writes_per_cr"),
    Metric("p50_create_to_children_seconds", "latency at 10 CR/s: p50 create → children",
           "latency.p50_seconds"),
    Metric("p99_create_to_children_seconds", "latency at 10 CR/s: p99 create → children",
           "latency.p99_seconds", "≤ 1 s", lambda v, _: v <= 1),
    Metric("chaos_calm_seconds", "chaos: undisturbed burst, seconds until all Ready (T)",
           "chaos.calm_seconds"),
    Metric("chaos_after_kill_seconds", "chaos: killed at T/2 → all Ready (vs T/2 undisturbed)",
           "chaos.after_kill_seconds"),
    Metric("chaos_catchup_ratio", "chaos: after kill / undisturbed second half",
           "chaos.catchup_ratio", "≤ 1.5", lambda v, _: v <= 1.5),
    Metric("rss_mib_0", "RSS MiB with 0 CRs", "memory.rss_mib_0"),
    Metric("rss_mib", "RSS MiB with N CRs", "memory.rss_mib_n", "≤ 100 at 1000",
           lambda v, _: v <= 100, only_n=1000),
    Metric("rss_mib_peak", "peak RSS MiB (whole run)", "memory.rss_mib_peak"),
    Metric("rss_mib_unrelated_delta", "RSS MiB added by unrelated objects",
           "unrelated.rss_mib_delta", "< 5", lambda v, _: v < 5),
    Metric("grown_to_crs", "finally grown to this many CRs (size 0)", "memory_at.crs"),
    Metric("rss_mib_grown", "RSS MiB when grown", "memory_at.rss_mib"),
    Metric("rss_kib_per_cr", "RSS KiB per CR (slope, N → grown)", "derived.rss_kib_per_cr",
           "≤ 20", lambda v, _: v <= 20),
    Metric("peer_ready_seconds", "original: seconds until all Deployments available",
           "peer.create.ready_seconds"),
    Metric("ready_ratio_to_original", "create burst: all Ready / original's all available",
           "derived.ready_ratio_to_original", "< 1", lambda v, _: v < 1),
    Metric("peer_cpu_seconds_create", "original: its CPU seconds for the burst",
           "peer.create.operator_cpu_seconds"),
    Metric("peer_requests_per_cr_create", "original: requests per new CR",
           "peer.create.requests_per_cr"),
    Metric("peer_writes_per_cr_create", "original: writes per new CR",
           "peer.create.writes_per_cr"),
    Metric("peer_spec_change_requests_per_cr", "original: image change, requests per CR",
           "peer.spec_change.requests_per_cr"),
    Metric("peer_restart_writes", "original: restart writes", "peer.restart.writes"),
    Metric("peer_restart_reconciled_seconds", "original: restart, seconds to all reconciled",
           "peer.restart.all_reconciled_seconds"),
    Metric("peer_rss_mib_0", "original: RSS MiB with 0 CRs", "peer.memory.rss_mib_0"),
    Metric("peer_rss_mib", "original: RSS MiB with N CRs", "peer.memory.rss_mib_n"),
)  # fmt: skip

UNSUFFIXED = (
    "requests_per_cr_create",
    "writes_per_cr_create",
    "ready_ratio_to_floor",
    "idle_writes",
    "p99_create_to_children_seconds",
    "rss_mib_unrelated_delta",
    "rss_kib_per_cr",
    "spec_change_requests_per_cr",
    "chaos_catchup_ratio",
)
"""Keys read by tooling without an N suffix (the largest N's value); keep them stable."""

REQUIRED = (
    "requests_per_cr_create", "writes_per_cr_create", "ready_seconds_1000",
    "floor_ready_seconds_1000", "ready_ratio_to_floor", "rss_mib_1000", "rss_mib_5000",
    "rss_mib_10000", "rss_kib_per_cr", "spec_change_requests_per_cr", "idle_writes",
    "restart_writes_1000", "p99_create_to_children_seconds", "conflicts_1000",
    "chaos_catchup_ratio",
)  # fmt: skip
"""Keys tooling reads (issue 14): always present in results.json, null when not measured."""


def flatten(runs: dict[str, Run]) -> dict[str, Any]:
    """`<key>_<N>` for every metric of every run, plus the unsuffixed keys of the largest N."""
    flat: dict[str, Any] = {}
    for n, run in sorted(runs.items(), key=lambda item: int(item[0])):
        for metric in METRICS:
            value = _get(run, metric.path)
            if value is None:
                continue
            if metric.key == "rss_mib":
                flat[f"rss_mib_{n}"] = value
            elif metric.key != "rss_mib_0":
                flat[f"{metric.key}_{n}"] = value
            if metric.key in UNSUFFIXED or metric.key == "rss_mib_0":
                flat[metric.key] = value
        for crs, rss in (_get(run, "memory_at.rss_mib_at") or {}).items():
            flat[f"rss_mib_{crs}"] = rss
        if not _get(run, "memory_at.rss_mib_at") and _get(run, "memory_at.crs"):
            flat[f"rss_mib_{run['memory_at']['crs']}"] = run["memory_at"]["rss_mib"]
    return flat


def merge(path: Path, run: Run) -> dict[str, Any]:
    """Add this run to results.json (replacing an earlier run with the same N)."""
    old = json.loads(path.read_text()) if path.exists() else {}
    runs: dict[str, Run] = old.get("runs", {})
    runs[str(run["n"])] = derive(run)
    flat = flatten(runs)
    results = {**dict.fromkeys(REQUIRED), **flat, "runs": runs}
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return results


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(runs: dict[str, Run]) -> str:
    """Markdown table: one row per metric, one column per N, with the goal and ✓/✗."""
    ns = sorted(runs, key=int)
    lines = [
        "| metric | goal | " + " | ".join(f"N={n}" for n in ns) + " |",
        "|---|---|" + "---|" * len(ns),
    ]
    for metric in METRICS:
        cells = []
        for n in ns:
            value = _get(runs[n], metric.path)
            cell = "-" if value is None else _fmt(value)
            applies = metric.only_n is None or metric.only_n == int(n)
            if value is not None and metric.ok is not None and applies:
                cell += " ✓" if metric.ok(float(value), runs[n]) else " ✗"
            cells.append(cell)
        lines.append(f"| {metric.label} | {metric.goal} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _per_cr_requests(run: Run, scenario: str) -> dict[str, float]:
    """Requests of one scenario per CR, by "verb resource" (audit log)."""
    counts = _get(run, f"{scenario}.requests.by_verb_resource") or {}
    return {name: round(value / run["n"], 2) for name, value in counts.items()}


def requests_table(runs: dict[str, Run], scenario: str = "create") -> str:
    """The operator's requests per CR in a scenario, by verb and resource."""
    ns = sorted(runs, key=int)
    per_run = {n: _per_cr_requests(runs[n], scenario) for n in ns}
    names = sorted({name for n in ns for name in per_run[n]})
    lines = [
        "| request (per CR) | " + " | ".join(f"N={n}" for n in ns) + " |",
        "|---|" + "---|" * len(ns),
    ]
    for name in names:
        cells = [_fmt(per_run[n].get(name, 0)) for n in ns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(runs: dict[str, Run]) -> str:
    """CPU seconds per process: the floor and the create burst of the first pair, per N."""
    columns = [
        (f"{label}, N={n}", window)
        for n in sorted(runs, key=int)
        for label, path in (("floor", "floor.cpu_seconds"), ("create burst", "create.cpu_seconds"))
        if (window := _get(runs[n], path))
    ]
    if not columns:
        return "(not measured)"
    extra = ("idle", "wall", "capacity")
    names = sorted(
        {k for _, w in columns for k in w if k not in extra},
        key=lambda k: -max(w.get(k, 0) for _, w in columns),
    )
    lines = [
        "| CPU seconds | " + " | ".join(label for label, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]

    def row(label: str, values: list[Any]) -> str:
        return f"| {label} | " + " | ".join(_fmt(v) for v in values) + " |"

    windows = [window for _, window in columns]
    lines += [row(name, [w.get(name, "-") for w in windows]) for name in names]
    lines.append(row("all of the above", [busy_seconds(w) for w in windows]))
    lines.append(row("idle (all cores)", [w["idle"] for w in windows]))
    lines.append(row("wall seconds x cores", [w["capacity"] for w in windows]))
    return "\n".join(lines)


def machine_lines(runs: dict[str, Run]) -> str:
    lines = []
    for n in sorted(runs, key=int):
        run, m = runs[n], runs[n]["machine"]
        lines.append(
            f"- N={n}: {run['date']}, {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, "
            f"Python {m['python']}, Kubernetes {m['kubernetes']}, "
            f"load average (1 min) at start {m['loadavg_1m_at_start']}, at end "
            f"{m.get('loadavg_1m_at_end', '-')}, run took {run['run_seconds']} s"
        )
    return "\n".join(lines)


def render(runs: dict[str, Run]) -> str:
    return "\n\n".join(
        [
            "### Summary",
            table(runs),
            "### Requests per new CR (create burst, from the audit log)",
            requests_table(runs, "create"),
            "### Requests per CR for the image change",
            requests_table(runs, "spec_change"),
            "### Where the CPU went (from the first create until all Ready / available)",
            cpu_table(runs),
            "### Machine and date",
            machine_lines(runs),
        ]
    )


def write_markdown(path: Path, runs: dict[str, Run]) -> None:
    """Replace the generated block of RESULTS.md (create the file if needed)."""
    block = f"{BEGIN}\n{render(runs)}\n{END}"
    text = path.read_text() if path.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + block + tail)
