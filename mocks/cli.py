"""``ketenpoort mocks``: serve the mock registries, list synthetic V-nummers for testing, or print
the supergraph of the COA and IND subgraphs (for Apollo Router, Hive Gateway and the like).

``list`` prints V-nummers in index order, one per line, at most ``--limit`` of them; the filters
combine with AND. It walks the population lazily, so a rare filter on a large population may take a
while but never holds the population in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mocks.data import DEFAULT_SEED, DEFAULT_SIZE, Population, actief_in_opvang
from mocks.vocabulary import SIGNAAL_SOORTEN

app = typer.Typer(help="Mock chain registries (BVV, COA, IND) with synthetic data.")

Seed = Annotated[int, typer.Option(help="Seed of the synthetic population.")]
Size = Annotated[int, typer.Option(min=1, help="Number of persons in the population.")]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8100,
    seed: Seed = DEFAULT_SEED,
    size: Size = DEFAULT_SIZE,
) -> None:
    """Serve BVV, COA and IND under /bvv, /coa and /ind (uvicorn)."""
    import uvicorn  # imported here: only serving needs it

    from mocks.app import combined_app, create_registries

    uvicorn.run(combined_app(create_registries(seed, size)), host=host, port=port)


@app.command("list")
def list_(
    signaal: Annotated[
        str | None,
        typer.Option(help=f"Only persons with this signal: {', '.join(SIGNAAL_SOORTEN)}."),
    ] = None,
    meldplicht: Annotated[
        bool, typer.Option(help="Only persons with an active meldplicht.")
    ] = False,
    opvang: Annotated[bool, typer.Option(help="Only persons currently in reception.")] = False,
    limit: Annotated[int, typer.Option(min=0, help="Print at most this many.")] = 20,
    seed: Seed = DEFAULT_SEED,
    size: Size = DEFAULT_SIZE,
) -> None:
    """Print matching V-nummers, one per line, in index order."""
    if signaal is not None and signaal not in SIGNAAL_SOORTEN:
        raise typer.BadParameter(
            f"must be one of {', '.join(SIGNAAL_SOORTEN)}", param_hint="--signaal"
        )
    population = Population(seed, size)
    gevonden = 0
    for i in range(population.size):
        if gevonden >= limit:
            break
        r = population.record(i)
        if signaal is not None and not any(s["soort"] == signaal for s in r["signaleringen"]):
            continue
        if meldplicht and not (r["meldplicht"] is not None and r["meldplicht"]["actief"]):
            continue
        if opvang and not actief_in_opvang(r):
            continue
        typer.echo(r["vnummer"])
        gevonden += 1


@app.command()
def supergraph(
    coa_url: Annotated[
        str | None, typer.Option(help="URL of the COA subgraph (default: mocks serve's).")
    ] = None,
    ind_url: Annotated[
        str | None, typer.Option(help="URL of the IND subgraph (default: mocks serve's).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Print the supergraph SDL of the COA and IND subgraphs (Apollo Federation v2)."""
    from mocks.federation import supergraph_sdl

    try:
        sdl = supergraph_sdl(coa_url, ind_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if output is None:
        typer.echo(sdl, nl=False)
    else:
        output.write_text(sdl, encoding="utf-8")
        typer.echo(f"supergraph written to {output}", err=True)
