"""Ratios, targets and the Markdown summary of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: (name, value key in ratios, operator, target). Reported, never asserted.
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("in-process ketenpoort/bare, 1 person", "inprocess_1_ketenpoort_over_bare", "<=", 1.15),
    ("in-process ketenpoort/bare, 50 persons", "inprocess_50_ketenpoort_over_bare", "<=", 1.10),
    ("in-process naive/ketenpoort, 50 persons", "inprocess_50_naive_over_ketenpoort", ">=", 4.0),
    ("HTTP ketenpoort/bare req/s, 50 persons", "http_50_ketenpoort_over_bare_rps", ">=", 0.7),
    ("HTTP ketenpoort/bare req/s, 1 person", "http_1_ketenpoort_over_bare_rps", ">=", 0.7),
)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(a / b, 3)


def ratios_and_targets(
    results: dict[str, Any], http: dict[str, Any] | None
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    ratios: dict[str, float | None] = {}
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
            ratios[f"http_{size}_ketenpoort_over_bare_rps"] = _ratio(
                point["ketenpoort"]["rps"], bare
            )
            for name in ("ketenpoort_pg", "ketenpoort_memstore"):
                if name in point:
                    ratios[f"http_{size}_{name}_over_bare_rps"] = _ratio(point[name]["rps"], bare)
    targets: list[dict[str, Any]] = []
    for name, key, op, target in TARGETS:
        value = ratios.get(key)
        if value is None:
            continue
        met = value <= target if op == "<=" else value >= target
        targets.append(
            {"name": name, "ratio": key, "value": value, "op": op, "target": target, "met": met}
        )
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
        lines.append(
            f"| {t['name']} | {t['value']:.3f} | {t['op']} {t['target']} | "
            f"{'met' if t['met'] else '**missed**'} |"
        )
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
            f"naive ends {(p.get('spans_per_request') or {}).get('naive')} spans per request."
        )
    http = results.get("http")
    if http:
        lines += [
            "",
            f"## HTTP (uvicorn, 1 worker, loopback; load: {http['client']}, "
            f"{http['concurrency']} connections, second process)",
            "",
            "| persons | variant | req/s | p50 ms | p99 ms | vs bare |",
            "|---:|---|---:|---:|---:|---:|",
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
                lines.append(
                    f"| {size} | {label} | {_fmt(v['rps'])} | {_fmt(v['p50_ms'], 2)} | "
                    f"{_fmt(v['p99_ms'], 2)} | {_fmt(_safe(v['rps'], bare), 3)} |"
                )
        lines += [
            "",
            f"Closed-loop load: {http['concurrency']} connections kept busy, so p50/p99 include "
            "queueing at the server; req/s and percentiles are medians over the rounds. Every "
            "server answered the same data (checked before timing); caches warm.",
        ]
    store = results.get("store_write")
    if store:
        lines += [
            "",
            "## Audit store writes (50-person batches, 16 concurrent committers)",
            "",
            "| store | records/s | batches/s | records/batch | commit p50 ms | commit p99 ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, s in store.items():
            lines.append(
                f"| {name} | {_fmt(s['records_per_s'])} | {_fmt(s['batches_per_s'])} | "
                f"{s['records_per_batch']} | {_fmt(s['commit_p50_ms'], 2)} | "
                f"{_fmt(s['commit_p99_ms'], 2)} |"
            )
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
    setup = results.get("setup", {})
    if setup:
        lines += ["", "## Setup", ""]
        for key, value in setup.items():
            if key == "query":
                lines.append(f"- query: `{value}`")
            else:
                lines.append(f"- {key}: {value}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _safe(a: float | None, b: float | None) -> float | None:
    return _ratio(a, b)
