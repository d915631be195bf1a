"""Smoke test of the benchmark harness (``python -m bench``): tiny counts, the JSON shape.

No time is asserted here: numbers from a smoke run on a shared machine mean nothing. What is
asserted is that every section runs (in process, HTTP with a second process, both audit stores
against real SQLite and PostgreSQL) and that the results file has the agreed shape.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.__main__ import main
from bench.load import parse_wrk
from tests.support import POSTGRES_URL, require_postgres

WRK_OUTPUT = """\
Running 4s test @ http://127.0.0.1:41234/graphql
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    42.10ms   10.02ms 120.33ms   80.00%
    Req/Sec   189.50     20.11   230.00     70.00%
  Latency Distribution
     50%   38.54ms
     75%   45.00ms
     90%   55.21ms
     99%    1.20s
  758 requests in 4.00s, 52.31MB read
  Non-2xx or 3xx responses: 3
Requests/sec:    189.47
Transfer/sec:     13.07MB
"""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed["requests"] == 758
    assert parsed["rps"] == 189.47
    assert parsed["p50_ms"] == 38.54
    assert parsed["p90_ms"] == 55.21
    assert parsed["p99_ms"] == 1200.0
    assert parsed["errors"] == 3
    assert parsed["seconds"] == 4.0


async def test_postgres_is_there_for_the_benchmark() -> None:
    await require_postgres()  # the harness needs it; fail naming the server, not mid-run
    assert POSTGRES_URL.startswith("postgresql://")


def test_bench_quick_run_writes_the_results_shape(tmp_path: Path) -> None:
    returned = main(["--quick", "--out", str(tmp_path), "--client", "httpx"])
    written = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    assert written["quick"] is True
    assert written["ratios"] == returned["ratios"]

    inproc = written["inprocess"]
    assert set(inproc) == {"1", "50"}
    for size in ("1", "50"):
        point = inproc[size]
        for key in ("bare_us", "naive_us", "ketenpoort_us", "ketenpoort_us_per_field"):
            assert _number(point[key]), (size, key, point[key])
        assert point["persons"] == int(size)
        assert point["audit_records_per_request"] >= point["persons"]
        assert point["spans_per_request"]["ketenpoort"] == 1 + int(size)  # request + subjects
        assert _number(point["paired"]["ketenpoort_over_bare"])
    assert inproc["50"]["fields"] > inproc["1"]["fields"] > 0

    http = written["http"]
    for key in ("bare_rps", "ketenpoort_rps", "ketenpoort_pg_rps", "p50_ms", "p99_ms"):
        assert _number(http[key]), (key, http[key])
    assert http["client"] == "httpx"
    for size in ("1", "50"):
        for variant in ("bare", "ketenpoort", "ketenpoort_pg", "ketenpoort_memstore"):
            measured = http["by_size"][size][variant]
            assert measured["requests"] > 0 and measured["errors"] == 0, (size, variant)

    ratios = written["ratios"]
    for key in (
        "inprocess_1_ketenpoort_over_bare",
        "inprocess_50_ketenpoort_over_bare",
        "inprocess_50_naive_over_ketenpoort",
        "http_50_ketenpoort_over_bare_rps",
        "http_50_ketenpoort_pg_over_bare_rps",
    ):
        assert _number(ratios[key]), key
    assert {t["ratio"] for t in written["targets"]} >= {
        "inprocess_1_ketenpoort_over_bare",
        "inprocess_50_ketenpoort_over_bare",
        "inprocess_50_naive_over_ketenpoort",
        "http_50_ketenpoort_over_bare_rps",
    }
    for target in written["targets"]:  # met or missed; unmeasured only with the reason why
        assert isinstance(target["met"], bool) or (target["met"] is None and target["why"])

    compiled = written["compiled"]
    assert compiled["requests_compiled"] > 0 and compiled["fallbacks"] == 0, compiled
    for key in ("build_closures_us", "build_source_us", "run_source_1_us", "run_closures_50_us"):
        assert _number(compiled[key]), (key, compiled)
    assert written["audit_in_process"]["rows_not_written"] > 0

    for store in ("sqlite", "postgresql"):
        measured = written["store_write"][store]
        assert measured["committers"] == 16
        assert measured["batches"] > 0 and _number(measured["records_per_s"]), store
        assert measured["records_per_batch"] == inproc["50"]["audit_records_per_request"]
        assert measured["rows_per_batch"] == 51  # the entry and one row per person

    memory = written["memory"]
    assert memory["persons"] == 50
    assert all(memory[f"{v}_peak_bytes"] > 0 for v in ("bare", "naive", "ketenpoort"))

    growth = written["growth"]
    assert list(growth) == ["1", "10", "25", "50", "100"]
    assert all(_number(p["ketenpoort_us"]) and _number(p["bare_us"]) for p in growth.values())

    machine = written["machine"]
    assert machine["cpu_count"] >= 1 and machine["python"] and machine["platform"]
    for package in ("strawberry-graphql", "graphql-core", "opentelemetry-sdk"):
        assert machine["versions"][package][0].isdigit(), package

    summary = (tmp_path / "SUMMARY.md").read_text(encoding="utf-8")
    assert "strawberry-graphql" in summary and "opentelemetry-sdk" in summary
    assert "ketenpoort/bare" in summary
