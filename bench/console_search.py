"""``python -m bench.console_search``: the console's searches over a 1,000,000-entry trail in
PostgreSQL (issue 14: "a search answers within a second on 1 million entries").

A separate step of ``make bench`` (never of ``make test``). It generates a synthetic trail —
valid hash chain, 1 to 3 data subjects per entry, five organisations, a few hundred officers,
ninety days — encodes it with the store's own :func:`~gateway.audit.chain.prepare` and
:func:`~gateway.audit.chain.link`, loads it with ``COPY`` (indexes dropped during the load and
rebuilt after, as the store defines them), then times the console's page searches through the
console's own code path (:func:`gateway.console.trail.search_page` over the store's public
``search``). It measures and reports; it asserts no time.

Options: ``--entries N`` (default 1,000,000), ``--repeat N`` (timings per search, default 5),
``--out DIR`` (default bench/results), ``--keep`` (do not drop the database).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.store import drop_database, fresh_database, require_postgres
from gateway.audit.chain import GENESIS_HASH, link, prepare
from gateway.audit.encoding import DecisionSets, ts
from gateway.audit.entries import ENTRY_COLUMNS, SUBJECT_COLUMNS
from gateway.audit.merkle import Frontier
from gateway.audit.model import AccessContext, AuditBatch, Decision, FieldDecision, SubjectAccess
from gateway.audit.postgres import PostgresAuditStore
from gateway.audit.tree import TREE_COLUMNS, TREE_TABLE
from gateway.console.trail import Filters, search_page

ORGS = {
    "NVIK": ("00000099000000000101", ["TOEZICHT_VW", "OVERLAST", "MELDPLICHT"]),
    "COA": ("00000099000000000202", ["OPVANG_UITVOERING"]),
    "IND": ("00000099000000000303", ["ASIEL_BEHANDELING"]),
    "DTV": ("00000099000000000404", ["TERUGKEER"]),
    "KMAR": ("00000099000000000505", ["GRENSTOEZICHT"]),
}
REGISTER = "https://register.ketenpoort.example/verwerkingen/"
CHUNK = 20_000
SUBJECT_POOL = 200_000
DAYS = 90


def _decisions(purpose: str, refused: bool) -> tuple[FieldDecision, ...]:
    rule = f"RULE-{purpose}"
    given = tuple(
        FieldDecision(f"Vreemdeling.{f}", f"vreemdeling.{f}", Decision.GIVEN, rule, "BVV")
        for f in ("vnummer", "naam", "verblijfsstatus", "opvang")
    )
    if not refused:
        return given
    return (
        *given,
        FieldDecision(
            "Vreemdeling.religie",
            "vreemdeling.religie",
            Decision.REFUSED,
            "FIELD_NOT_PERMITTED",
            None,
        ),
    )


class Generator:
    """A deterministic synthetic trail (seeded), entry by entry, oldest first."""

    def __init__(self, entries: int, seed: int = 14) -> None:
        self.entries = entries
        self.random = random.Random(seed)
        self.start = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
        self.step = dt.timedelta(days=DAYS) / entries
        self.subjects = [f"{self.random.getrandbits(256):064x}" for _ in range(SUBJECT_POOL)]
        self.sets = {
            (p, r): _decisions(p, r) for _, ps in ORGS.values() for p in ps for r in (False, True)
        }

    def batch(self, n: int) -> AuditBatch:
        rnd = self.random
        org = rnd.choice(list(ORGS))
        oin, purposes = ORGS[org]
        purpose = rnd.choice(purposes)
        officer = f"{org.lower()}-{rnd.randrange(100):03d}"
        when = self.start + self.step * n
        context = AccessContext(
            trace_id=f"{rnd.getrandbits(128):032x}",
            span_id=f"{rnd.getrandbits(64):016x}",
            parent_span_id=None,
            start_time=when,
            organisation_oin=oin,
            organisation=org,
            officer=officer,
            authenticated_as=officer,
            roles=("medewerker",),
            purpose=purpose,
            legal_basis=f"grondslag {purpose}",
            processing_activity=REGISTER + purpose.lower(),
            policy_version="0" * 63 + ("1" if n < self.entries // 2 else "2"),
        )
        batch = AuditBatch(context=context, end_time=when + dt.timedelta(milliseconds=20))
        decisions = self.sets[(purpose, rnd.random() < 0.1)]
        for subject in rnd.sample(self.subjects, rnd.choice((1, 1, 1, 2, 3))):
            batch.subjects.append(SubjectAccess(subject, decisions))
        return batch


async def load(url: str, entries: int) -> dict[str, Any]:
    """Create the schema, COPY the generated trail in, rebuild the indexes, analyse."""
    store = PostgresAuditStore(url)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    try:
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            "('audit_entry', 'audit_entry_subject') AND indexname NOT LIKE '%_pkey'"
        )
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        generator, sets = Generator(entries), DecisionSets()
        head_seq, head_hash, written_sets = 0, GENESIS_HASH, set()
        tree = Frontier()
        for first in range(0, entries, CHUNK):
            prepared = [
                prepare(generator.batch(n), sets, text_timestamps=False)
                for n in range(first, min(first + CHUNK, entries))
            ]
            missing = {k: v for p in prepared for k, v in p.sets.items() if k not in written_sets}
            if missing:
                await conn.executemany(
                    "INSERT INTO audit_decision_set VALUES ($1, $2)", list(missing.items())
                )
                written_sets |= set(missing)
            recorded = generator.start + generator.step * (first + CHUNK)
            linked = link(
                prepared,
                head_seq=head_seq,
                head_hash=head_hash,
                recorded_at=recorded,
                recorded_at_text=ts(recorded),
            )
            await conn.copy_records_to_table(
                "audit_entry", records=linked.entries, columns=ENTRY_COLUMNS
            )
            await conn.copy_records_to_table(
                "audit_entry_subject", records=linked.subjects, columns=SUBJECT_COLUMNS
            )
            # The Merkle log's nodes too, so the store opens on a consistent tree.
            head_seq, head_hash = linked.seq, linked.hash
            await conn.copy_records_to_table(
                TREE_TABLE, records=tree.extend(linked.leaves), columns=TREE_COLUMNS
            )
        await conn.execute(
            "UPDATE audit_chain_head SET seq = $1, hash = $2, recorded_at = now() WHERE id = 1",
            head_seq,
            head_hash,
        )
        loaded = time.perf_counter() - started
        for row in indexes:
            await conn.execute(row["indexdef"])
        await conn.execute("ANALYZE")
        subject_rows = await conn.fetchval("SELECT count(*) FROM audit_entry_subject")
    finally:
        await conn.close()
    return {
        "entries": entries,
        "subject_rows": int(subject_rows),
        "load_seconds": round(loaded, 1),
        "index_seconds": round(time.perf_counter() - started - loaded, 1),
    }


def searches(generator: Generator, middle: int) -> dict[str, tuple[Filters, int | None]]:
    """The console searches to time: (filters, page cursor)."""
    rnd = random.Random(99)
    day = generator.start + dt.timedelta(days=DAYS // 2)
    sample = generator.batch(middle)  # replays the generator's choices for a realistic officer
    subject = rnd.choice(generator.subjects)
    return {
        "betrokkene (V-nummer)": (Filters(subject=subject), None),
        "medewerker": (Filters(officer=sample.context.officer), None),
        "organisatie": (Filters(organisation="KMAR"), None),
        "doelbinding": (Filters(purpose="MELDPLICHT"), None),
        "tijdvenster (1 dag, midden)": (Filters(since=day, until=day + dt.timedelta(days=1)), None),
        "vanaf (midden, geen eind)": (Filters(since=day), None),
        "organisatie + doelbinding + 1 dag": (
            Filters(
                organisation="NVIK", purpose="OVERLAST", since=day, until=day + dt.timedelta(days=1)
            ),
            None,
        ),
        "medewerker + besluit geweigerd": (
            Filters(officer=sample.context.officer, decision=Decision.REFUSED),
            None,
        ),
        "verwerkingsactiviteit": (Filters(activity=REGISTER + "terugkeer"), None),
        "geen filter, eerste pagina": (Filters(), None),
        "geen filter, pagina halverwege": (Filters(), middle),
        "trace-id (Verzoek)": (Filters(trace_id=sample.context.trace_id), None),
    }


async def measure(url: str, entries: int, repeat: int) -> list[dict[str, Any]]:
    store = PostgresAuditStore(url)
    await store.open()
    out = []
    try:
        for name, (filters, after) in searches(Generator(entries), entries // 2).items():
            times, rows = [], 0
            for _ in range(repeat):
                started = time.perf_counter()
                page = await search_page(store, filters, after=after, rows=50)
                times.append(time.perf_counter() - started)
                rows = len(page.rows)
            out.append(
                {
                    "search": name,
                    "rows": rows,
                    "median_ms": round(statistics.median(times) * 1000, 1),
                    "max_ms": round(max(times) * 1000, 1),
                    "first_ms": round(times[0] * 1000, 1),
                }
            )
    finally:
        await store.close()
    return out


def summary(result: dict[str, Any]) -> str:
    lines = [
        "# Console search over a large trail (PostgreSQL)",
        "",
        f"{result['load']['entries']:,} entries ({result['load']['subject_rows']:,} subject rows)"
        f" loaded with COPY in {result['load']['load_seconds']} s, indexes built in "
        f"{result['load']['index_seconds']} s. One page = 50 rows, through the console's "
        "`search_page`. Target: under 1 s per page (measured, not asserted).",
        "",
        "| search | rows | first (ms) | median (ms) | max (ms) | under 1 s |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for m in result["searches"]:
        met = "yes" if m["max_ms"] < 1000 else "**no**"
        lines.append(
            f"| {m['search']} | {m['rows']} | {m['first_ms']} | {m['median_ms']} | "
            f"{m['max_ms']} | {met} |"
        )
    return "\n".join(lines) + "\n"


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console_search")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    await require_postgres()
    url, name = await fresh_database()
    try:
        print(f"generating and loading {args.entries:,} entries ...", file=sys.stderr)
        loaded = await load(url, args.entries)
        print(f"loaded: {loaded}", file=sys.stderr)
        result = {"load": loaded, "searches": await measure(url, args.entries, args.repeat)}
    finally:
        if not args.keep:
            await drop_database(name)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "console-search.json").write_text(json.dumps(result, indent=2) + "\n")
    text = summary(result)
    (args.out / "CONSOLE_SEARCH.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
