"""``python -m bench``: the whole benchmark in one process and one run; results to bench/results.

Options: ``--quick`` (tiny counts, for the smoke test), ``--out DIR``, ``--client auto|httpx|wrk``,
``--no-http``, ``--no-postgres``, ``--profile auto|always|never``. It never asserts a time:
targets are reported as met or missed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import inprocess
from bench.common import (
    BENCH_CAP,
    BENCH_QUOTA,
    ORGANISATION,
    PURPOSE,
    ROLES,
    bench_policy,
    dataset,
    full_query,
    grant_of,
    load_bench_policy,
    machine,
    payload,
)
from bench.http import FULL_HTTP, QUICK_HTTP, run_http
from bench.merkle import merkle_costs
from bench.report import ratios_and_targets, write_summary
from bench.store import (
    FULL_STORE,
    QUICK_STORE,
    drop_database,
    fresh_database,
    postgres_throughput,
    sqlite_throughput,
)
from bench.variants import (
    NullExporter,
    SchemaRunner,
    SpanCounter,
    bare_schema,
    naive_schema,
    sdk_provider,
    start_ketenpoort,
    state_settings,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SIZES = (1, 50)
GROWTH = [1, 10, 25, 50, 100]


async def spans_per_request(
    runners: dict[str, tuple[inprocess.Runner, SpanCounter]], query: str, vnummers: list[str]
) -> dict[str, int]:
    """Spans one request ends, per variant (bare makes none)."""
    counts: dict[str, int] = {}
    for name, (run, counter) in runners.items():
        before = counter.ended
        await run(payload(query, vnummers))
        counts[name] = counter.ended - before
    return counts


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def in_process(
    work: Path, policy_path: Path, query: str, counts: inprocess.Counts, args: argparse.Namespace
) -> dict[str, Any]:
    from mocks import create_registries

    policy = load_bench_policy(policy_path)
    mocks = create_registries()
    data = dataset(mocks.population, max(GROWTH))
    vnummers = data.vnummers(max(GROWTH))
    naive_spans = SpanCounter()
    provider = sdk_provider(NullExporter(), naive_spans)
    ketenpoort = await start_ketenpoort(state_settings(work / "state", policy_path), mocks)
    runners: dict[str, inprocess.Runner] = {
        "bare": SchemaRunner(bare_schema(data.records)),
        "naive": SchemaRunner(
            naive_schema(data.records, provider), {"allowed": grant_of(policy).allowed}
        ),
        "ketenpoort": ketenpoort,
    }
    out: dict[str, Any] = {}
    try:
        results: dict[str, Any] = {}
        for size in SIZES:
            say(f"in-process, {size} person(s): bare / naive / ketenpoort round-robin")
            point = await inprocess.compare(runners, query, vnummers[:size], counts)
            point["audit_records_per_request"] = ketenpoort.store.batches[-1].record_count()
            point["spans_per_request"] = await spans_per_request(
                {
                    "naive": (runners["naive"], naive_spans),
                    "ketenpoort": (ketenpoort, ketenpoort.spans),
                },
                query,
                vnummers[:size],
            )
            results[str(size)] = point
        # The store benchmark commits what the gateway built for a 50-person request.
        template = ketenpoort.store.batches[-1]
        assert len(template.subjects) == 50, "the last audit batch is the 50-person request's"
        out["inprocess"] = results
        say("memory per 50-person request (tracemalloc peak)")
        out["memory"] = await inprocess.memory(runners, query, vnummers[:50], counts.memory_samples)
        say(f"growth over {GROWTH} persons")
        out["growth"] = await inprocess.growth(runners, query, vnummers, GROWTH, counts)
        out["audit_in_process"] = {
            "store": "ChainBufferStore: the store's encoding, queue, group commit and chain "
            "hashing; no SQL write",
            "commits": ketenpoort.store.commits,
            "records": ketenpoort.store.records,
            "rows_not_written": ketenpoort.store.rows,
            "spans_exported": ketenpoort.exporter.spans,
        }
        stats = ketenpoort.gateway.compiled.stats
        say("compiled answer builders: build time per document, run time per kind")
        out["compiled"] = {
            "requests_compiled": stats["compiled"],
            "fallbacks": stats["fallback"],
            "fallback_reasons": {
                k.split(":", 1)[1]: v for k, v in stats.items() if k.startswith("fallback:")
            },
            **await inprocess.compiled_builders(ketenpoort, query, vnummers, counts),
        }
        misses = [t for t in ratios_and_targets(out, None)[1] if t["met"] is False]
        if args.profile == "always" or (args.profile == "auto" and misses):
            say("profiling the ketenpoort path (cProfile), 50 and 1 person(s)")
            out["profile"] = {
                "50": await inprocess.profile(
                    ketenpoort, query, vnummers[:50], counts.profile_seconds
                ),
                "1": await inprocess.profile(
                    ketenpoort, query, vnummers[:1], counts.profile_seconds
                ),
            }
    finally:
        await ketenpoort.close()
        provider.shutdown()
    store_counts = QUICK_STORE if args.quick else FULL_STORE
    say(f"audit store write throughput: SQLite, {store_counts.committers} committers")
    store_write = {"sqlite": await sqlite_throughput(work, template, store_counts)}
    if not args.no_postgres:
        say(f"audit store write throughput: PostgreSQL, {store_counts.committers} committers")
        store_write["postgresql"] = await postgres_throughput(template, store_counts)
    out["store_write"] = store_write
    say("Merkle log: leaf hashing per request, checkpoint signing")
    out["merkle"] = await merkle_costs(work, template, quick=args.quick)
    return out


def http_section(
    work: Path, policy_path: Path, query: str, args: argparse.Namespace
) -> dict[str, Any]:
    from mocks import Population

    population = Population()
    vnummers = [population.vnummer(i) for i in range(50)]
    sizes = {"50": vnummers, "1": vnummers[:1]}
    pg_name: str | None = None
    pg_url: str | None = None
    if not args.no_postgres:
        pg_url, pg_name = asyncio.run(fresh_database())
    try:
        say("HTTP: bare / ketenpoort (SQLite) / ketenpoort (PostgreSQL), round-robin")
        raw = run_http(
            work=work,
            policy=policy_path,
            query=query,
            sizes=sizes,
            counts=QUICK_HTTP if args.quick else FULL_HTTP,
            client=args.client,
            postgres_url=pg_url,
        )
    finally:
        if pg_name is not None:
            asyncio.run(drop_database(pg_name))
    main_size = raw["50"]
    http: dict[str, Any] = {
        "persons": 50,
        "bare_rps": main_size["bare"]["rps"],
        "ketenpoort_rps": main_size["ketenpoort"]["rps"],
        "ketenpoort_pg_rps": main_size.get("ketenpoort_pg", {}).get("rps"),
        "p50_ms": main_size["ketenpoort"]["p50_ms"],
        "p99_ms": main_size["ketenpoort"]["p99_ms"],
        "bare_p50_ms": main_size["bare"]["p50_ms"],
        "bare_p99_ms": main_size["bare"]["p99_ms"],
        "ketenpoort_pg_p50_ms": main_size.get("ketenpoort_pg", {}).get("p50_ms"),
        "ketenpoort_pg_p99_ms": main_size.get("ketenpoort_pg", {}).get("p99_ms"),
        "ketenpoort_memstore_rps": main_size.get("ketenpoort_memstore", {}).get("rps"),
        "client": raw["client"],
        "concurrency": raw["concurrency"],
        "by_size": {size: raw[size] for size in sizes},
    }
    return http


def http_profiles(
    work: Path, policy_path: Path, query: str, results: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """pyinstrument over the real app for each HTTP target missed (or all, ``--profile
    always``): which store, how many persons."""
    from bench.profile_http import profile_http
    from mocks import Population

    _, targets = ratios_and_targets(results, results.get("http"))
    wanted: dict[str, tuple[str, int]] = {}
    for target in targets:
        ratio = target["ratio"]
        if not ratio.startswith("http_") or args.profile == "never":
            continue
        if target["met"] is False or args.profile == "always":
            size = int(ratio.split("_")[1])
            store = "postgresql" if "_pg_" in ratio else "sqlite"
            wanted[f"{store}_{size}"] = (store, size)
    population = Population()
    seconds = 0.3 if args.quick else 4.0
    profiles: dict[str, Any] = {}
    for name, (store, size) in wanted.items():
        if store == "postgresql" and args.no_postgres:
            continue
        say(f"profiling the HTTP path (pyinstrument): {store}, {size} person(s)")
        vnummers = [population.vnummer(i) for i in range(size)]
        pg_name: str | None = None
        url = store
        if store == "postgresql":
            url, pg_name = asyncio.run(fresh_database())
        try:
            profiles[name] = asyncio.run(
                profile_http(work, policy_path, query, vnummers, url, seconds=seconds)
            )
        finally:
            if pg_name is not None:
                asyncio.run(drop_database(pg_name))
    return profiles


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--client", choices=("auto", "httpx", "wrk"), default="auto")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP section")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    counts = inprocess.QUICK if args.quick else inprocess.FULL
    started = time.monotonic()
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
    }
    with tempfile.TemporaryDirectory(prefix="ketenpoort-bench-") as tmp:
        work = Path(tmp)
        policy_path = bench_policy(work)
        query = full_query(load_bench_policy(policy_path))
        results["setup"] = {
            "caller": {"organisation": ORGANISATION, "roles": list(ROLES), "purpose": PURPOSE},
            "query": query,
            "policy": (
                f"policy/ketenbeleid.yaml with {PURPOSE} quotum_per_medewerker_per_dag="
                f"{BENCH_QUOTA} and max_personen_per_verzoek={BENCH_CAP} (growth to 100)"
            ),
            "limits": "max_cost=50000 (the 100-person growth point); other limits default",
            "cache": "memory, warm (every person asked once before timing), ttl 24 h",
            "audit_store_in_process": (
                "the store's real commit path up to the database (record and decision-set "
                "encoding, group-commit queue and writer, chain hashing); the SQL write is "
                "left out (measured apart: store_write, and over HTTP)"
            ),
            "spans": (
                "SDK TracerProvider + BatchSpanProcessor + no-op exporter "
                "(naive and ketenpoort alike)"
            ),
            "timing": (
                f"{counts.rounds} rounds x ~{counts.slice_ms:.0f} ms per variant, round-robin "
                "(rotating order), median of per-round means; time.perf_counter_ns; GC on"
            ),
        }
        results.update(asyncio.run(in_process(work, policy_path, query, counts, args)))
        if not args.no_http:
            results["http"] = http_section(work, policy_path, query, args)
            results["http_profile"] = http_profiles(work, policy_path, query, results, args)
    results["machine"]["loadavg_before"] = [round(x, 2) for x in load_before]
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["ratios"], results["targets"] = ratios_and_targets(results, results.get("http"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    write_summary(results, args.out / "SUMMARY.md")
    for target in results["targets"]:
        state = "met" if target["met"] else "MISSED"
        goal = f"{target['op']} {target['target']}"
        say(f"{target['name']}: {target['value']} (target {goal}) {state}")
    say(f"done in {results['duration_s']} s; results in {args.out}")
    return results


if __name__ == "__main__":
    main()
