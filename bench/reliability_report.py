"""Soak and chaos results as JSON, a Markdown summary and (soak) a PNG plot.

The JSON carries every counter (``unrecorded``, ``lost``, ``leaks`` per scenario and in total);
the Markdown says what passed and, where something did not, exactly which counter failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.observe import write_json


def _verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def soak_failures(s: dict[str, Any]) -> list[str]:
    """Why a soak scenario did not pass, one phrase per failed criterion."""
    out = []
    for key in ("unrecorded", "leaks", "lost", "undocumented_5xx", "no_answer"):
        if s[key]:
            out.append(f"{key} = {s[key]}")
    if not s["audit_verify"]["ok"]:
        out.append(f"audit verify: {s['audit_verify']['detail']}")
    growth = s["rss_kib"]["growth_after_warmup_pct"]
    if growth is not None and growth >= 10.0:
        out.append(f"RSS grew {growth} % after warm-up")
    if s["server_log_errors"]:
        out.append(f"{len(s['server_log_errors'])} error line(s) in the server log")
    return out


def write_soak(result: dict[str, Any], out: Path) -> None:
    """``soak.json``, ``soak.md`` and ``soak.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "soak.json", result)
    plot_soak(result, out / "soak.png")
    plan = result["plan"]
    lines = [
        "# Soak",
        "",
        f"Run {result['when']}: {plan['duration_s']:.0f} s per scenario at a target of "
        f"{plan['rate']:.0f} req/s ({plan['concurrency']} connections), warm-up "
        f"{plan['warmup_s']:.0f} s. Mix: 70 % one-person look-ups over every purpose and "
        "principal of the default policy, 20 % multi-person, 5 % refused purposes, 5 % trail "
        "searches by the NVIK's security roles. Load generator and gateway share the machine.",
        "",
        "| scenario | requests | req/s reached | p50 ms | p99 ms | with data | unrecorded "
        "| lost | leaks | undocumented 5xx | trail entries / records | verify | RSS start → end "
        "(peak) MiB | growth after warm-up | fds start → end | sockets start → end | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---|---|---|",
    ]
    for s in result["scenarios"]:
        rss = s["rss_kib"]
        lines.append(
            f"| {s['scenario']} ({s['processes']} process{'es' if s['processes'] > 1 else ''}) "
            f"| {s['requests']} | {s['achieved_rate']} | {s['latency_ms']['p50']} "
            f"| {s['latency_ms']['p99']} | {s['with_data']} | {s['unrecorded']} | {s['lost']} "
            f"| {s['leaks']} | {s['undocumented_5xx']} | {s['trail_entries']} / "
            f"{s['trail_records']} | {'OK' if s['audit_verify']['ok'] else 'FAILED'} "
            f"| {rss['start'] / 1024:.0f} → {rss['end'] / 1024:.0f} ({rss['peak'] / 1024:.0f}) "
            f"| {rss['growth_after_warmup_pct']} % | {s['fds']['start']} → {s['fds']['end']} "
            f"| {s['sockets']['start']} → {s['sockets']['end']} | {_verdict(s['pass'])} |"
        )
    lines += ["", "Answers by status and code:", ""]
    for s in result["scenarios"]:
        codes = ", ".join(f"{k}: {v}" for k, v in s["by_code"].items())
        status = ", ".join(f"{k}: {v}" for k, v in s["by_status"].items())
        lines.append(f"- **{s['scenario']}** — status {status}; codes {codes}")
        cpu = s.get("cpu_ms_per_request") or {}
        if cpu:
            per = ", ".join(f"{k} {v}" for k, v in cpu.items())
            load = " / ".join(str(x) for x in s.get("load_average") or [])
            lines.append(f"  - CPU-ms per request: {per} (load average at the end: {load})")
        failures = soak_failures(s)
        if failures:
            lines.append(f"  - not passed: {'; '.join(failures)}")
        for line in s["server_log_errors"][:5]:
            lines.append(f"  - log: `{line}`")
    t = result["total"]
    lines += [
        "",
        f"Total: {t['requests']} requests, {t['with_data']} answers with data, "
        f"{t['unrecorded']} unrecorded, {t['lost']} lost, {t['leaks']} leaked values, "
        f"{t['undocumented_5xx']} undocumented 5xx — {_verdict(t['pass'])}.",
        "",
        "![req/s, latency and RSS over time](soak.png)",
        "",
    ]
    (out / "soak.md").write_text("\n".join(lines), encoding="utf-8")


def plot_soak(result: dict[str, Any], path: Path) -> None:
    """req/s, p50/p99 latency and RSS over time, one column per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = result["scenarios"]
    fig, axes = plt.subplots(
        3,
        max(1, len(scenarios)),
        figsize=(6 * max(1, len(scenarios)), 8),
        squeeze=False,
        sharex="col",
    )
    for col, s in enumerate(scenarios):
        samples = s["samples"]
        t = [x["t"] for x in samples]
        axes[0][col].plot(t, [x["answers"] for x in samples], lw=0.8)
        axes[0][col].set_title(f"{s['scenario']}")
        axes[0][col].set_ylabel("answers/s")
        axes[1][col].plot(t, [x["p50_ms"] for x in samples], lw=0.8, label="p50")
        axes[1][col].plot(t, [x["p99_ms"] for x in samples], lw=0.8, label="p99")
        axes[1][col].set_ylabel("latency ms")
        axes[1][col].legend(loc="upper right")
        axes[2][col].plot(t, [x["rss_kib"] / 1024 for x in samples], lw=0.8)
        axes[2][col].set_ylabel("RSS MiB (all gateway processes)")
        axes[2][col].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_chaos(result: dict[str, Any], out: Path) -> None:
    """``chaos.json`` and ``chaos.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "chaos.json", result)
    plan = result["plan"]
    lines = [
        "# Chaos",
        "",
        f"Run {result['when']}: each fault under mixed traffic at {plan['rate']:.0f} req/s: "
        f"{plan['before_s']:.0f} s before, {plan['during_s']:.0f} s during, {plan['after_s']:.0f} "
        f"s after. PostgreSQL, Redis and the registries are cut by a TCP proxy the run owns; "
        "the machine's own servers are never stopped.",
        "",
        "| fault | stack | requests | answers during the fault | /readyz said down "
        "| recovery s | unrecorded | lost | leaks | undocumented 5xx | verdict |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for f in result["faults"]:
        phases = f["phases"]
        during = phases.get("during") or phases.get("until exit") or phases.get("all") or {}
        answers = ", ".join(f"{k}: {v}" for k, v in (during.get("answers") or {}).items())
        down = f.get("readyz_reported_down")
        down_text = "n/a (health answers)" if down is None else ("yes" if down else "**no**")
        lines.append(
            f"| {f['fault']} | {f['stack']} | {f['requests']} | {answers} | {down_text} "
            f"| {f['recovery_s']} | {f['unrecorded']} | {f['lost']} | {f['leaks']} "
            f"| {f['undocumented_5xx']} | {_verdict(f['pass'])} |"
        )
    lines += ["", "Details:", ""]
    for f in result["faults"]:
        extra = {
            k: v
            for k, v in f.items()
            if k
            in (
                "unexpected_during",
                "max_latency_during_s",
                "ready_again_s",
                "in_flight_at_signal",
                "in_flight_dropped",
                "answered_while_stopped",
                "exit_code",
                "exit_s",
                "grace_s",
                "kills",
                "answers_received_with_data",
                "restart_to_ready_s",
                "audit_verify",
            )
            and v not in ({}, None)
        }
        lines.append(f"- **{f['fault']}**: " + "; ".join(f"{k} {v}" for k, v in extra.items()))
    for note in result["notes"]:
        lines.append(f"- {note}")
    t = result["total"]
    lines += [
        "",
        f"Total: {t['requests']} requests, {t['unrecorded']} unrecorded, {t['lost']} lost, "
        f"{t['leaks']} leaked values, {t['undocumented_5xx']} undocumented 5xx — "
        f"{_verdict(t['pass'])}.",
        "",
    ]
    (out / "chaos.md").write_text("\n".join(lines), encoding="utf-8")
