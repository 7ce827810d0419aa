"""The benchmark scenarios. Each returns a JSON-friendly dict of measurements.

Durations are measured from the benchmark's own timestamps (see `observe`); request counts come
from the API server's audit log for the operator's user over the scenario's wall-clock window.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from . import workload
from .cpu import CpuWindow
from .harness import Bench
from .observe import Observer

log = logging.getLogger("bench")

Key = tuple[str, str]
Result = dict[str, Any]


def per_cr(counts: dict[str, int], n: int) -> dict[str, float]:
    return {name: round(value / n, 2) for name, value in counts.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def not_ready(obs: Observer, keys: list[Key]) -> int:
    """CRs not Ready once the operator went quiet (expected 0; logged for a closer look)."""
    missing = [key for key in keys if key not in obs.ready_at]
    for key in missing[:5]:
        log.warning("%s/%s not Ready: %s", *key, (obs.cr(key) or {}).get("status"))
    return len(missing)


def _ready_at(obs: Observer, status: bool) -> dict[Key, float]:
    """When each CR was Ready (its status), or, for a controller that writes no status (the
    original), when its Deployment was available."""
    return obs.ready_at if status else obs.rolled_out_at


async def create_burst(
    bench: Bench, obs: Observer, keys: list[Key], within: float, *, status: bool = True
) -> Result:
    """N CRs at once → seconds until all Ready; the operator's requests per CR."""
    n = len(keys)
    reconciles0, cpu0 = await bench.operator.reconciles(), bench.operator.cpu_seconds()
    wall0, t0, machine = time.time(), time.monotonic(), CpuWindow(bench.pids())
    await workload.create_trackingservers(bench.admin, keys)
    created = time.monotonic() - t0
    log.info("created %d TrackingServers in %.1fs; waiting for Ready", n, created)
    ready_at = _ready_at(obs, status)
    await obs.wait_until(
        lambda: all(key in ready_at for key in keys), within=within, what="all Ready"
    )
    ready = max(ready_at[key] for key in keys) - t0
    machine_cpu = machine.close()
    await obs.wait_until(
        lambda: all(key in obs.rolled_out_at for key in keys), within=within, what="available"
    )
    available = max(obs.rolled_out_at[key] for key in keys) - t0
    children_applied = max(max(obs.children_of(key).values()) for key in keys) - t0
    await bench.operator.quiesce(at_least=n)
    cpu = bench.operator.cpu_seconds() - cpu0
    children = [len(obs.children_of(key)) for key in keys]
    values = await bench.operator.metrics()
    errors = values.get("controller_runtime_reconcile_errors_total", 0)
    reconciles = values.get("controller_runtime_reconcile_total", 0) - reconciles0
    counts = await bench.requests(wall0)
    writes = counts.to_dict()
    return {
        "n": n,
        "create_calls_seconds": round(created, 2),
        "children_applied_seconds": round(children_applied, 2),
        "ready_seconds": round(ready, 2),
        "deployments_available_seconds": round(available, 2),
        "not_ready_after_quiesce": not_ready(obs, keys) if status else 0,
        "children_per_cr": round(sum(children) / n, 2),
        "reconcile_errors": int(errors),
        "reconciles_per_cr": round(reconciles / n, 2),
        "operator_cpu_seconds": round(cpu, 1),
        "cpu_seconds": machine_cpu,
        "requests_per_cr": round((counts.writes + counts.reads) / n, 2),
        "writes_per_cr": round(counts.writes / n, 2),
        "reads_per_cr": round(counts.reads / n, 2),
        "per_cr_by_verb": per_cr(writes["by_verb"], n),
        "conflicts": counts.conflicts,
        "requests": writes,
    }


async def idle(bench: Bench, n: int, resync_period: float) -> Result:
    """After convergence, one forced full resync (every key reconciled) → writes and reads."""
    before = await bench.operator.reconciles()
    wall0 = time.time()
    await bench.operator.quiesce(at_least=before + n, within=2 * resync_period + 300)
    reconciles = await bench.operator.reconciles() - before
    counts = await bench.requests(wall0)
    return {
        "window_seconds": round(time.time() - wall0, 1),
        "reconciles": int(reconciles),
        "writes": counts.writes,
        "reads": counts.reads,
        "requests": counts.to_dict(),
    }


async def restart(bench: Bench, n: int) -> Result:
    """Stop and start the operator with N CRs → writes, seconds to synced and to all reconciled."""
    wall0 = time.time()
    await bench.operator.stop()
    bench.operator.start()
    synced = await bench.operator.wait_ready()
    last_rise = await bench.operator.quiesce(at_least=n)
    counts = await bench.requests(wall0)
    return {
        "sync_seconds": round(synced, 2),
        "all_reconciled_seconds": round(last_rise - bench.operator.started_at, 2),
        "reconciles": int(await bench.operator.reconciles()),
        "writes": counts.writes,
        "reads": counts.reads,
        "requests": counts.to_dict(),
    }


async def spec_change(
    bench: Bench, obs: Observer, keys: list[Key], within: float, *, status: bool = True
) -> Result:
    """Change the image of all N → every Deployment carries it, rolled out, all Ready again."""
    n, image = len(keys), workload.NEW_IMAGE
    wall0, t0 = time.time(), time.monotonic()
    await workload.set_image(bench.admin, keys, image)
    patched = time.monotonic() - t0
    ready_at = _ready_at(obs, status)
    await obs.wait_until(
        lambda: obs.all_rolled_out(keys, image) and all(key in ready_at for key in keys),
        within=within,
        what="new image rolled out and Ready",
    )
    converged = max(max(ready_at[key], obs.rolled_out_at[key]) for key in keys) - t0
    image_applied = max(obs.image_at[key][1] for key in keys) - t0
    await bench.operator.quiesce()
    counts = await bench.requests(wall0)
    return {
        "patch_calls_seconds": round(patched, 2),
        "image_applied_seconds": round(image_applied, 2),
        "converged_seconds": round(converged, 2),
        "not_ready_after_quiesce": not_ready(obs, keys) if status else 0,
        "requests_per_cr": round((counts.writes + counts.reads) / n, 2),
        "writes_per_cr": round(counts.writes / n, 2),
        "per_cr_by_verb": per_cr(counts.to_dict()["by_verb"], n),
        "conflicts": counts.conflicts,
        "requests": counts.to_dict(),
    }


async def latency(
    bench: Bench, obs: Observer, *, count: int, rate: float, children: int, within: float
) -> Result:
    """CRs created at `rate` per second → create-to-children-applied, as the watches saw it."""
    namespace = "bench-latency"
    await workload.create_namespaces(bench.admin, [namespace])
    keys = workload.cr_keys(count, [namespace], prefix="lat")
    wall0, t0 = time.time(), time.monotonic()
    creates: list[asyncio.Task[Any]] = []
    for i, key in enumerate(keys):
        await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        creates.append(asyncio.create_task(bench.admin.create(workload.trackingserver(key))))
    await asyncio.gather(*creates)
    achieved = count / (time.monotonic() - t0)
    await obs.wait_until(
        lambda: obs.all_children(keys, children), within=within, what="children of all"
    )
    await bench.operator.quiesce()
    delays = [max(obs.children_of(key).values()) - obs.cr_seen[key] for key in keys]
    counts = await bench.requests(wall0)
    return {
        "count": count,
        "rate_per_second": round(achieved, 2),
        "p50_seconds": round(percentile(delays, 50), 3),
        "p99_seconds": round(percentile(delays, 99), 3),
        "max_seconds": round(max(delays), 3),
        "writes_per_cr": round(counts.writes / count, 2),
    }


async def unrelated_memory(
    bench: Bench, *, configmaps: int, deployments: int, namespaces: int
) -> Result:
    """RSS before and after many objects the operator must not cache (other namespaces, no
    managed-by label)."""
    names = [f"unrelated-{i}" for i in range(namespaces)]
    before = await bench.operator.steady_rss()
    t0 = time.monotonic()
    await workload.create_namespaces(bench.admin, names)
    await workload.create_unrelated(bench.admin, names, configmaps, deployments)
    log.info("created %d ConfigMaps, %d Deployments in %.0fs", configmaps, deployments,
             time.monotonic() - t0)  # fmt: skip
    await asyncio.sleep(10)  # let any (wrongly) streamed events arrive
    after = await bench.operator.steady_rss()
    return {
        "configmaps": configmaps,
        "deployments": deployments,
        "rss_mib_before": round(before, 1),
        "rss_mib_after": round(after, 1),
        "rss_mib_delta": round(after - before, 1),
    }


async def memory_at(
    bench: Bench, obs: Observer, totals: Sequence[int], namespaces: Sequence[str], children: int
) -> Result:
    """Grow to each of `totals` CRs in turn (size 0: no Pods, to spare the node) → operator
    RSS at each."""
    at: dict[str, float] = {}
    t0 = time.monotonic()
    for total in sorted(totals):
        need = max(0, total - len(obs.crs.store))
        keys = workload.cr_keys(need, namespaces, prefix=f"mem{total}")
        await workload.create_trackingservers(bench.admin, keys, size=0)
        await obs.wait_until(
            lambda keys=keys: obs.all_children(keys, children),  # type: ignore[misc]
            within=3600,
            what=f"children at {total}",
        )
        await bench.operator.quiesce(quiet=5.0, within=3600)
        at[str(len(obs.crs.store))] = round(await bench.operator.steady_rss(), 1)
        log.info("memory: %d CRs, RSS %.1f MiB", len(obs.crs.store), at[str(len(obs.crs.store))])
    return {
        "crs": len(obs.crs.store),
        "children_applied_seconds": round(time.monotonic() - t0, 1),
        "rss_mib": at[max(at, key=int)],
        "rss_mib_at": at,
        "rss_mib_peak": round(bench.operator.peak_rss(), 1),
    }


async def _burst(bench: Bench, keys: list[Key]) -> float:
    """Create `keys` at once; returns the monotonic start."""
    t0 = time.monotonic()
    await workload.create_trackingservers(bench.admin, keys)
    return t0


async def chaos(
    bench: Bench, obs: Observer, namespaces: Sequence[str], count: int, within: float
) -> Result:
    """An undisturbed burst of `count` CRs (all Ready after T), then another one during which
    the operator is killed (SIGKILL) at T/2 and started again at once. The restarted operator's
    time from the kill to all Ready is compared with what the undisturbed run needed for the
    same remaining half of the time, T/2."""
    calm = workload.cr_keys(count, namespaces, prefix="calm")
    t0 = await _burst(bench, calm)
    await obs.wait_until(lambda: obs.all_ready(calm), within=within, what="calm burst Ready")
    calm_seconds = max(obs.ready_at[key] for key in calm) - t0
    await bench.operator.quiesce()

    hit = workload.cr_keys(count, namespaces, prefix="hit")
    t1 = await _burst(bench, hit)
    await asyncio.sleep(max(0.0, t1 + calm_seconds / 2 - time.monotonic()))
    killed = time.monotonic()
    ready_at_kill = sum(key in obs.ready_at for key in hit)
    await bench.operator.kill()
    bench.operator.start()
    await bench.operator.wait_ready()
    await obs.wait_until(lambda: obs.all_ready(hit), within=within, what="all Ready after kill")
    after_kill = max(obs.ready_at[key] for key in hit) - killed
    await bench.operator.quiesce()
    undisturbed_rest = calm_seconds - (killed - t1)
    return {
        "count": count,
        "calm_seconds": round(calm_seconds, 2),
        "killed_after_seconds": round(killed - t1, 2),
        "ready_at_kill": ready_at_kill,
        "undisturbed_rest_seconds": round(undisturbed_rest, 2),
        "after_kill_seconds": round(after_kill, 2),
        "catchup_ratio": round(after_kill / undisturbed_rest, 2) if undisturbed_rest > 0 else None,
    }
