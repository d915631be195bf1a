"""Ratios, targets and the Markdown summary of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.load import SATURATED

#: (name, value key in ratios, operator, target): issue 12's targets. Reported, never asserted.
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("in-process ketenpoort/bare, 1 person", "inprocess_1_ketenpoort_over_bare", "<=", 0.90),
    ("in-process ketenpoort/bare, 50 persons", "inprocess_50_ketenpoort_over_bare", "<=", 0.60),
    ("in-process naive/ketenpoort, 50 persons", "inprocess_50_naive_over_ketenpoort", ">=", 10.0),
    ("HTTP ketenpoort (SQLite)/bare req/s, 1 person", "http_1_ketenpoort_over_bare_rps", ">=", 1.0),
    (
        "HTTP ketenpoort (SQLite)/bare req/s, 50 persons",
        "http_50_ketenpoort_over_bare_rps",
        ">=",
        1.0,
    ),
    (
        "HTTP ketenpoort (PostgreSQL)/bare req/s, 1 person",
        "http_1_ketenpoort_pg_over_bare_rps",
        ">=",
        0.9,
    ),
    (
        "HTTP ketenpoort (PostgreSQL)/bare req/s, 50 persons",
        "http_50_ketenpoort_pg_over_bare_rps",
        ">=",
        0.9,
    ),
)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(a / b, 3)


def _saturated(point: dict[str, Any], *names: str) -> bool:
    return any((point.get(name) or {}).get("generator_saturated") for name in names)


def ratios_and_targets(
    results: dict[str, Any], http: dict[str, Any] | None
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """Ratios of one run, and every target with its value (``None``: not measured, with why)."""
    ratios: dict[str, float | None] = {}
    why: dict[str, str] = {}
    for size, point in (results.get("inprocess") or {}).items():
        ratios[f"inprocess_{size}_ketenpoort_over_bare"] = _ratio(
            point["ketenpoort_us"], point["bare_us"]
        )
        ratios[f"inprocess_{size}_naive_over_ketenpoort"] = _ratio(
            point["naive_us"], point["ketenpoort_us"]
        )
        ratios[f"inprocess_{size}_naive_over_bare"] = _ratio(point["naive_us"], point["bare_us"])
        for name, value in (point.get("paired") or {}).items():
            ratios[f"inprocess_{size}_{name}_paired"] = value
    if http:
        for size, point in http["by_size"].items():
            bare = point["bare"]["rps"]
            for name in ("ketenpoort", "ketenpoort_pg", "ketenpoort_memstore"):
                if name not in point:
                    continue
                key = f"http_{size}_{name}_over_bare_rps"
                if _saturated(point, "bare", name):
                    # The generator, not the server, may have set the pace: no ratio.
                    ratios[key] = None
                    why[key] = "load generator saturated"
                else:
                    ratios[key] = _ratio(point[name]["rps"], bare)
    targets: list[dict[str, Any]] = []
    for name, key, op, target in TARGETS:
        value = ratios.get(key)
        entry: dict[str, Any] = {"name": name, "ratio": key, "value": value, "op": op}
        entry["target"] = target
        if value is None:
            entry["met"] = None
            entry["why"] = why.get(key, "not measured in this run")
        else:
            entry["met"] = value <= target if op == "<=" else value >= target
        targets.append(entry)
    return ratios, targets


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_summary(results: dict[str, Any], path: Path) -> None:
    m = results["machine"]
    lines: list[str] = [
        "# Benchmarks: the cost of accountability, side by side",
        "",
        f"Generated {results['generated']} by `python -m bench`"
        + (" (--quick: smoke counts, numbers meaningless)" if results.get("quick") else "")
        + f" in {results['duration_s']} s. Medians; nothing here is asserted.",
        "",
        "## Machine",
        "",
        f"- CPUs: {m['cpu_count']} ({m['cpu_usable']} usable), {m['cpu_model']}",
        f"- Python {m['python']} ({m['implementation']}), {m['platform']}",
        f"- Load average before/after: {m.get('loadavg_before')} / {m.get('loadavg_after')}",
        "- Versions: " + ", ".join(f"{name} {version}" for name, version in m["versions"].items()),
        "",
        "## Targets",
        "",
        "| target | value | goal | |",
        "|---|---:|---:|---|",
    ]
    for t in results["targets"]:
        state = "met" if t["met"] else ("**missed**" if t["met"] is False else t["why"])
        value = "—" if t["value"] is None else f"{t['value']:.3f}"
        name = t["name"] + (IN_PROCESS_STORE if t["ratio"].startswith("inprocess") else "")
        lines.append(f"| {name} | {value} | {t['op']} {t['target']} | {state} |")
    for size, p in results.get("inprocess", {}).items():
        lines.append(
            f"| µs per resolved field, {size} person(s): ketenpoort | "
            f"{_fmt(p['ketenpoort_us_per_field'], 3)} | floor (bare) "
            f"{_fmt(p['bare_us_per_field'], 3)} | |"
        )
    lines += _missed_notes(results)
    lines += ["", *_compiled_section(results)]
    lines += [
        "",
        "## In process (µs per request, median of round-robin rounds)",
        "",
        "| persons | fields | bare | naive | ketenpoort | bare µs/field | ketenpoort µs/field "
        "| ketenpoort/bare | naive/ketenpoort | paired k/b | paired n/k |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = results["ratios"]
    for size, p in results.get("inprocess", {}).items():
        lines.append(
            f"| {size} | {p['fields']} | {_fmt(p['bare_us'])} | {_fmt(p['naive_us'])} | "
            f"{_fmt(p['ketenpoort_us'])} | {_fmt(p['bare_us_per_field'], 3)} | "
            f"{_fmt(p['ketenpoort_us_per_field'], 3)} | "
            f"{_fmt(ratios.get(f'inprocess_{size}_ketenpoort_over_bare'), 3)} | "
            f"{_fmt(ratios.get(f'inprocess_{size}_naive_over_ketenpoort'), 2)} | "
            f"{_fmt(ratios.get(f'inprocess_{size}_ketenpoort_over_bare_paired'), 3)} | "
            f"{_fmt(ratios.get(f'inprocess_{size}_naive_over_ketenpoort_paired'), 2)} |"
        )
    lines += [
        "",
        "Ratios are of the medians; *paired* is the median of the per-round ratios (each round "
        "runs the variants back to back, so they share that moment's machine noise). The "
        "spread per variant (min, p25, p75) is in latest.json (`inprocess.<n>.series`).",
    ]
    for size, p in results.get("inprocess", {}).items():
        lines.append(
            f"- {size} person(s): {p.get('audit_records_per_request')} audit records and "
            f"{(p.get('spans_per_request') or {}).get('ketenpoort')} spans per ketenpoort request; "
            f"naive checks a permission on every field and ends "
            f"{(p.get('spans_per_request') or {}).get('naive')} spans per request (strawberry's "
            "OpenTelemetry extension traces the operation's phases and the root resolver, not "
            "fields read by the default resolver)."
        )
    http = results.get("http")
    if http:
        lines += [
            "",
            f"## HTTP (uvicorn, 1 worker, loopback; load: {http['client']}, "
            f"{http['concurrency']} connections, second process)",
            "",
            "| persons | variant | req/s | p50 ms | p99 ms | vs bare | generator CPU (max) |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for size, point in http["by_size"].items():
            bare = point["bare"]["rps"]
            for name in ("bare", "ketenpoort", "ketenpoort_pg", "ketenpoort_memstore"):
                if name not in point:
                    continue
                v = point[name]
                label = {
                    "bare": "bare",
                    "ketenpoort": "ketenpoort (SQLite)",
                    "ketenpoort_pg": "ketenpoort (PostgreSQL)",
                    "ketenpoort_memstore": "ketenpoort, audit store in memory (diagnostic)",
                }[name]
                ratio = _fmt(_safe(v["rps"], bare), 3)
                if name != "bare" and ratios.get(f"http_{size}_{name}_over_bare_rps") is None:
                    ratio = "— (generator saturated)"
                lines.append(
                    f"| {size} | {label} | {_fmt(v['rps'])} | {_fmt(v['p50_ms'], 2)} | "
                    f"{_fmt(v['p99_ms'], 2)} | {ratio} | {_fmt(v.get('client_cpu_max'), 2)} |"
                )
        lines += [
            "",
            f"Closed-loop load: {http['concurrency']} connections kept busy, so p50/p99 include "
            "queueing at the server; req/s and percentiles are medians over the rounds. Every "
            "server answered the same data (checked before timing); caches warm. Generator CPU "
            "is the load generator's CPU time over wall time (one thread: 1.0 is a full core); "
            f"at {SATURATED} or more in any round the generator may set the pace, and no ratio "
            "is printed for that server.",
        ]
    store = results.get("store_write")
    if store:
        lines += [
            "",
            "## Audit store writes (50-person batches, 16 concurrent committers)",
            "",
            "| store | logical records/s | rows written/s | batches/s | records/batch "
            "| rows/batch | commit p50 ms | commit p99 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, s in store.items():
            lines.append(
                f"| {name} | {_fmt(s['records_per_s'])} | {_fmt(s.get('rows_per_s'))} | "
                f"{_fmt(s['batches_per_s'])} | {s['records_per_batch']} | "
                f"{s.get('rows_per_batch')} | {_fmt(s['commit_p50_ms'], 2)} | "
                f"{_fmt(s['commit_p99_ms'], 2)} |"
            )
        lines += [
            "",
            "A logical record is one decision about one field of one data subject (what "
            "`audit search` returns); the store writes one entry row per request and one row "
            "per data subject, pointing at a shared decision set, so rows are far fewer.",
        ]
    merkle = results.get("merkle")
    if merkle:
        lines += [
            "",
            "## Merkle log (in the group-commit writer, not the request's task)",
            "",
            f"- chain + leaf hash of one {merkle['records_per_request']}-record entry "
            f"(`link`): {_fmt(merkle['link_us_per_request'], 2)} µs per request, of which "
            f"the leaf hash: {_fmt(merkle['leaf_hash_us_per_request'], 2)} µs",
            f"- tree append (the subtrees a leaf completes): "
            f"{_fmt(merkle['tree_append_us_per_request'], 2)} µs per request",
            f"- one checkpoint (head read from a {merkle['checkpoint_store_entries']}-entry "
            f"SQLite store, Ed25519 signature, file append): {_fmt(merkle['checkpoint_ms'], 3)} "
            f"ms; at most one per {merkle['checkpoint_every_entries']} entries: "
            f"{_fmt(merkle['checkpoint_us_per_request'], 3)} µs per request",
        ]
    memory = results.get("memory")
    if memory:
        lines += [
            "",
            f"## Memory per {memory['persons']}-person request (tracemalloc peak)",
            "",
            "| variant | KiB |",
            "|---|---:|",
        ]
        for name in ("bare", "naive", "ketenpoort"):
            if f"{name}_peak_kib" in memory:
                lines.append(f"| {name} | {_fmt(memory[f'{name}_peak_kib'])} |")
    growth = results.get("growth")
    if growth:
        lines += [
            "",
            "## Growth (µs per request)",
            "",
            "| persons | fields | bare | naive | ketenpoort | ketenpoort/bare "
            "| extra µs per person |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for size, p in growth.items():
            lines.append(
                f"| {size} | {p['fields']} | {_fmt(p.get('bare_us'))} | {_fmt(p.get('naive_us'))} "
                f"| {_fmt(p.get('ketenpoort_us'))} | {_fmt(p.get('ketenpoort_over_bare'), 3)} "
                f"| {_fmt(p.get('ketenpoort_extra_us_per_person'))} |"
            )
    profile = results.get("profile")
    if profile:
        for size, prof in profile.items():
            lines += [
                "",
                f"## Profile: ketenpoort, {size} person(s) (cProfile, {prof['requests']} requests; "
                "shares, not absolute µs)",
                "",
                "| function (own time) | calls/req | own µs/req | cum µs/req |",
                "|---|---:|---:|---:|",
            ]
            for e in prof["top_tottime"][:15]:
                lines.append(
                    f"| `{e['function']}` | {e['calls_per_request']} | "
                    f"{e['tottime_us_per_request']} | {e['cumtime_us_per_request']} |"
                )
            lines += [
                "",
                "| gateway function (cumulative) | calls/req | cum µs/req |",
                "|---|---:|---:|",
            ]
            for e in prof["gateway_cumulative"][:12]:
                lines.append(
                    f"| `{e['function']}` | {e['calls_per_request']} | "
                    f"{e['cumtime_us_per_request']} |"
                )
    for prof in (results.get("http_profile") or {}).values():
        tree = prof["tree"].splitlines()
        lines += [
            "",
            f"## Profile: HTTP path, {prof['store']}, {prof['persons']} person(s) "
            f"(pyinstrument, wall clock, {prof['concurrency']} concurrent requests, "
            f"{prof['rps_under_profiler']} req/s under the profiler)",
            "",
            "```",
            *tree[:70],
            *(["... (cut)"] if len(tree) > 70 else []),
            "```",
        ]
    setup = results.get("setup", {})
    if setup:
        lines += ["", "## Setup", ""]
        for key, value in setup.items():
            if key == "query":
                lines.append(f"- query: `{value}`")
            else:
                lines.append(f"- {key}: {value}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


#: Said next to every in-process number: what the ketenpoort variant's commit includes.
IN_PROCESS_STORE = " (audit path up to the store, SQL write kept out)"


def _missed_notes(results: dict[str, Any]) -> list[str]:
    """For each HTTP target missed: where the gap is (the in-memory store diagnostic says
    whether it is the durable commit) and what would close it."""
    http = results.get("http")
    notes: list[str] = []
    for t in results["targets"]:
        if t["met"] is not False or not t["ratio"].startswith("http_") or not http:
            continue
        size = t["ratio"].split("_")[1]
        memstore = results["ratios"].get(f"http_{size}_ketenpoort_memstore_over_bare_rps")
        store = "PostgreSQL" if "_pg_" in t["ratio"] else "SQLite"
        if memstore is not None and memstore >= t["target"]:
            notes.append(
                f"- {t['name']}: missed ({t['value']:.3f}). The same app with the audit store "
                f"in memory makes {memstore:.3f} × bare, so the gap is the durable commit to "
                f"{store} (the profile below shows the time awaiting `commit`). What would "
                "close it: more requests per group commit (more concurrent connections), a "
                "faster flush to stable storage (a disk with a fast, power-safe fsync; for "
                "PostgreSQL a less loaded server: every round trip waits for its process to be "
                "scheduled). Relaxing durability (`synchronous=NORMAL`, "
                "`synchronous_commit=off`) would close it too and is not done: an answer "
                "leaves only after its records are durable."
            )
        else:
            notes.append(
                f"- {t['name']}: missed ({t['value']:.3f}); even with the audit store in "
                f"memory the app makes {memstore} × bare: see the HTTP profile below for the "
                "gateway's own share."
            )
    return ["", *notes] if notes else []


def _compiled_section(results: dict[str, Any]) -> list[str]:
    """Compiled answer builders: fallbacks, build time per document, run time per kind."""
    c = results.get("compiled")
    if not c:
        return []
    reasons = ", ".join(f"{k}: {v}" for k, v in c["fallback_reasons"].items()) or "none"
    lines = [
        "## Compiled answers",
        "",
        f"- Requests answered by compiled builders in process: {c['requests_compiled']:,}; "
        f"fallbacks to strawberry's execution: {c['fallbacks']:,} ({reasons}).",
        f"- Build time per document (the benchmark's query, median): closures "
        f"{_fmt(c['build_closures_us'])} µs, generated source {_fmt(c['build_source_us'])} µs.",
        "- Per request: "
        + "; ".join(
            f"{size} person(s): closures {_fmt(c.get(f'run_closures_{size}_us'))} µs, "
            f"generated source {_fmt(c.get(f'run_source_{size}_us'))} µs"
            for size in (1, 50)
        )
        + ".",
        f"- The gateway's default is `{c['default']}`: closures at a plan's first request "
        f"(cheap to build), generated source once it has answered {c['promote_after']} "
        "(faster per request, dearer to build).",
        "",
        "In-process numbers: the ketenpoort variant commits every batch through the audit "
        "store's own path (record and decision-set encoding, the group-commit queue and "
        "writer, chain hashing) but not the SQL write, which is measured apart (store writes "
        "below, and over HTTP with SQLite and PostgreSQL).",
    ]
    return lines


def _safe(a: float | None, b: float | None) -> float | None:
    return _ratio(a, b)
