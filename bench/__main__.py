"""`python -m bench --n 1000`: run the scenarios against a fresh local control plane.

First the floor: the same children created directly by a client, no operator, on a fresh
control plane. Then, on another fresh control plane, the operator: the create burst always runs
first (the others need its CRs), with the operator's default resync period; then, as selected:
restart (the operator comes back with `--resync-period`), idle (one full resync), spec change,
latency (CRs at a fixed rate), chaos (kill -9 during a burst), unrelated objects (memory), and
optionally growing to each of `--memory-crs` CRs. With `--peer`, the original Go controller
(built from its source, outside this repository) runs create, restart and spec change on a
third control plane. With `--pairs K`, K - 1 more floor + create-burst pairs follow, each on
fresh control planes: this machine's speed drifts from minute to minute (the same floor took
56 s and 97 s within the hour), so the ratio to the floor is reported as the median over the
pairs, each pair's ratio beside it. Results go to bench/results.json and RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiment_lab.binaries import REPO_ROOT, find_binaries

from . import cpu, floor, report, scenarios, workload
from .harness import BENCH_DIR, Bench, bench_environment
from .observe import Observer

log = logging.getLogger("bench")

OPTIONAL = ("restart", "idle", "spec", "latency", "chaos", "unrelated")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, default=100, help="TrackingServers in the burst")
    parser.add_argument(
        "--scenarios",
        default="all",
        help=f"comma-separated subset of {','.join(OPTIONAL)} (create always runs), or all",
    )
    parser.add_argument("--namespaces", type=int, default=10, help="spread the CRs over these")
    parser.add_argument(
        "--resync-period",
        type=float,
        default=30.0,
        help="operator's, from the restart on (seconds)",
    )
    parser.add_argument("--latency-count", type=int, default=100)
    parser.add_argument("--latency-rate", type=float, default=10.0, help="CRs per second")
    parser.add_argument("--configmaps", type=int, default=10_000, help="unrelated ConfigMaps")
    parser.add_argument("--deployments", type=int, default=1_000, help="unrelated Deployments")
    parser.add_argument(
        "--memory-crs",
        default="",
        help="finally grow to each of these CR counts (comma-separated) and measure RSS",
    )
    parser.add_argument("--chaos-count", type=int, default=200, help="CRs per chaos burst")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor measurement")
    parser.add_argument(
        "--pairs", type=int, default=1, help="floor + create-burst pairs (median ratio)"
    )
    parser.add_argument(
        "--peer", type=Path, default=None, help="the original controller's binary to compare"
    )
    parser.add_argument(
        "--peer-arg", action="append", default=[], help="extra option of the peer (repeatable)"
    )
    parser.add_argument(
        "--operator-arg", action="append", default=[], help="extra `run` option (repeatable)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default .local/bench/<N>")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results.json")
    args = parser.parse_args(argv)
    chosen = OPTIONAL if args.scenarios == "all" else tuple(args.scenarios.split(","))
    unknown = set(chosen) - set(OPTIONAL) - {"create"}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.pairs < 1 or (args.pairs > 1 and args.no_floor):
        parser.error("--pairs needs at least 1, and the floor")
    args.chosen = chosen
    args.memory_totals = [int(v) for v in args.memory_crs.split(",") if v.strip()]
    return args


async def run_scenarios(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    n, op = args.n, bench.operator
    namespaces = [f"bench-{i}" for i in range(args.namespaces)]
    within = max(300.0, 0.6 * n)
    result: dict[str, Any] = {"n": n, "scenarios": ["create", *args.chosen]}
    await workload.create_namespaces(bench.admin, namespaces)
    async with Observer(bench.admin) as obs:
        op.start()
        await op.wait_ready()
        memory = result["memory"] = {"rss_mib_0": round(await op.steady_rss(), 1)}
        run_wall0 = time.time()

        log.info("create burst: %d TrackingServers", n)
        keys = workload.cr_keys(n, namespaces)
        result["create"] = await scenarios.create_burst(bench, obs, keys, within)
        children = round(result["create"]["children_per_cr"])
        memory["rss_mib_n"] = round(await op.steady_rss(), 1)
        log.info("create: %s", _brief(result["create"]))

        # From here on the operator runs with a short resync period, for the idle scenario; the
        # burst ran with the default (10 h), so no periodic resync competed with it.
        op.resync_period = args.resync_period
        memory["rss_mib_peak_before_restart"] = round(op.peak_rss(), 1)
        if "restart" in args.chosen:
            log.info("restart: stopping and starting the operator")
            result["restart"] = await scenarios.restart(bench, n)
            memory["rss_mib_after_restart"] = round(await op.steady_rss(), 1)
            log.info("restart: %s", _brief(result["restart"]))
        if "idle" in args.chosen:
            if "restart" not in args.chosen:
                await scenarios.restart(bench, n)
            log.info("idle: waiting for a full resync (period %gs)", args.resync_period)
            result["idle"] = await scenarios.idle(bench, n, args.resync_period)
            log.info("idle: %s", _brief(result["idle"]))
        if "spec" in args.chosen:
            log.info("spec change: new image for all %d", n)
            result["spec_change"] = await scenarios.spec_change(bench, obs, keys, within)
            log.info("spec change: %s", _brief(result["spec_change"]))
        if "latency" in args.chosen:
            log.info("latency: %d CRs at %g/s", args.latency_count, args.latency_rate)
            result["latency"] = await scenarios.latency(
                bench,
                obs,
                count=args.latency_count,
                rate=args.latency_rate,
                children=children,
                within=within,
            )
            log.info("latency: %s", _brief(result["latency"]))
        if "chaos" in args.chosen and args.chaos_count > 1:
            log.info(
                "chaos: %d CRs undisturbed, %d with kill -9", args.chaos_count, args.chaos_count
            )
            result["chaos"] = await scenarios.chaos(
                bench, obs, namespaces, args.chaos_count, within
            )
            log.info("chaos: %s", _brief(result["chaos"]))
        if "unrelated" in args.chosen:
            log.info("unrelated: %d ConfigMaps, %d Deployments", args.configmaps, args.deployments)
            result["unrelated"] = await scenarios.unrelated_memory(
                bench, configmaps=args.configmaps, deployments=args.deployments, namespaces=10
            )
            log.info("unrelated: %s", _brief(result["unrelated"]))
        memory["rss_mib_peak"] = round(
            max(op.peak_rss(), memory.get("rss_mib_peak_before_restart", 0)), 1
        )
        if args.memory_totals:
            log.info("memory: growing to %s TrackingServers", args.memory_totals)
            result["memory_at"] = await scenarios.memory_at(
                bench, obs, args.memory_totals, namespaces, children
            )
            log.info("memory: %s", _brief(result["memory_at"]))
        whole_run = await bench.requests(run_wall0)
        result["conflicts"] = whole_run.conflicts
        result["requests_total"] = whole_run.to_dict()
    return result


async def run_peer(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """The original controller: create burst, restart and image change, with its RSS."""
    n, op = args.n, bench.operator
    namespaces = [f"bench-{i}" for i in range(args.namespaces)]
    within = max(300.0, 0.6 * n)
    result: dict[str, Any] = {"n": n, "args": args.peer_arg}
    await workload.create_namespaces(bench.admin, namespaces)
    async with Observer(bench.admin, labelled=False) as obs:
        op.start()
        await op.wait_ready()
        memory = result["memory"] = {"rss_mib_0": round(await op.steady_rss(), 1)}
        log.info("peer: create burst: %d TrackingServers", n)
        keys = workload.cr_keys(n, namespaces)
        result["create"] = await scenarios.create_burst(bench, obs, keys, within, status=False)
        memory["rss_mib_n"] = round(await op.steady_rss(), 1)
        log.info("peer: create: %s", _brief(result["create"]))
        result["restart"] = await scenarios.restart(bench, n)
        log.info("peer: restart: %s", _brief(result["restart"]))
        result["spec_change"] = await scenarios.spec_change(bench, obs, keys, within, status=False)
        log.info("peer: spec change: %s", _brief(result["spec_change"]))
    return result


def _brief(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items() if not isinstance(v, dict))


def pair(floor_result: dict[str, Any], create: dict[str, Any]) -> dict[str, float]:
    floor_s, ready_s = floor_result["ready_seconds"], create["ready_seconds"]
    floor_cpu, create_cpu = floor_result["cpu_seconds"], create["cpu_seconds"]
    return {
        "floor_seconds": floor_s,
        "ready_seconds": ready_s,
        "ratio": round(ready_s / floor_s, 2),
        "cpu_ratio": round(cpu.busy_seconds(create_cpu) / cpu.busy_seconds(floor_cpu), 2),
    }


async def another_pair(workdir: Path, binaries: Path, args: argparse.Namespace) -> dict[str, float]:
    """The floor, then the operator's create burst, each on a fresh control plane."""
    namespaces = [f"bench-{i}" for i in range(args.namespaces)]
    keys = workload.cr_keys(args.n, namespaces)
    within = max(300.0, 0.6 * args.n)
    log.info("pair: floor, then the create burst, on fresh control planes")
    floor_result = await floor.floor(workdir, binaries, keys, within=within)
    async with bench_environment(workdir, binaries, operator_args=args.operator_arg) as bench:
        await workload.create_namespaces(bench.admin, namespaces)
        async with Observer(bench.admin) as obs:
            bench.operator.start()
            await bench.operator.wait_ready()
            create = await scenarios.create_burst(bench, obs, keys, within)
    result = pair(floor_result, create)
    log.info("pair: %s", _brief(result))
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workdir: Path = args.workdir or REPO_ROOT / ".local" / "bench" / str(args.n)
    await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
    await asyncio.to_thread(workdir.mkdir, parents=True)
    binaries = await asyncio.to_thread(find_binaries)
    started, date = time.monotonic(), datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_at_start = os.getloadavg()[0]
    floor_result = None
    if not args.no_floor:
        log.info("floor: the children of %d TrackingServers, created directly", args.n)
        keys = workload.cr_keys(args.n, [f"bench-{i}" for i in range(args.namespaces)])
        floor_result = await floor.floor(workdir, binaries, keys, within=max(300.0, 0.6 * args.n))
        log.info("floor: %s", _brief(floor_result))
    async with bench_environment(
        workdir,
        binaries,
        operator_args=args.operator_arg,
    ) as bench:
        machine = report.machine_info(await bench.kubernetes_version())
        result = await run_scenarios(bench, args)
    if floor_result is not None:
        result["floor"] = floor_result
        result["pairs"] = [pair(floor_result, result["create"])]
        for i in range(1, args.pairs):
            result["pairs"].append(await another_pair(workdir / f"pair-{i}", binaries, args))
    if args.peer is not None:
        try:
            async with bench_environment(
                workdir, binaries, operator_args=args.peer_arg, peer=args.peer
            ) as bench:
                result["peer"] = await run_peer(bench, args)
        except Exception as err:  # keep the operator's results
            log.exception("peer: failed")
            result["peer"] = {"error": f"{type(err).__name__}: {err}"}
    machine["loadavg_1m_at_start"] = round(load_at_start, 2)
    machine["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    log.info("logs and audit log kept in %s", workdir)
    return {
        **result,
        "date": date,
        "run_seconds": round(time.monotonic() - started),
        "machine": machine,
        "options": {
            "namespaces": args.namespaces,
            "resync_period": args.resync_period,
            "latency": [args.latency_count, args.latency_rate],
            "unrelated": [args.configmaps, args.deployments],
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench] %(asctime)s %(message)s",
                        datefmt="%H:%M:%S")  # fmt: skip
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    run = asyncio.run(main_async(args))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    results = report.merge(args.results, run)
    report.write_markdown(args.results.with_name("RESULTS.md"), results["runs"])
    print(report.render(results["runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
