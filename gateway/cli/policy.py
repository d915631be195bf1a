"""``ketenpoort policy check|explain|render|purposes`` — the policy as reviewers, operators and
integrators use it.

The lead mounts :data:`app` as the ``policy`` sub-command. Every command validates the policy
against the gateway's own schema (the same check as at start), so what passes here also starts.
The policy file defaults to ``$KETENPOORT_POLICY``, else ``policy/ketenbeleid.yaml``.

Exit codes: 0 success; 1 the policy is invalid (message on stderr, naming file and item) or
``check --strict`` found warnings; 2 bad arguments (unknown organisation or purpose).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from gateway.assembly.policy_file import load_policy
from gateway.policy import model as policy_mod
from gateway.policy.model import Policy, PolicyError
from gateway.policy.register import purposes_table, render_markdown

DEFAULT_POLICY = Path("policy/ketenbeleid.yaml")

app = typer.Typer(
    help="Check, explain and render the purpose-binding policy (the DPIA's data set).",
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path | None,
    typer.Argument(help="Policy file (default: $KETENPOORT_POLICY or policy/ketenbeleid.yaml)."),
]


def default_policy_path() -> Path:
    """``$KETENPOORT_POLICY`` if set and non-empty, else ``policy/ketenbeleid.yaml``."""
    return Path(os.environ.get("KETENPOORT_POLICY") or DEFAULT_POLICY)


def gateway_coordinates() -> Mapping[str, str]:
    """Every ``Type.field`` of the served schema → its named type."""
    # Imported here: building the schema pulls in the resolvers, which `--help` does not need.

    from gateway.execution.schema import graphql_schema, schema_coordinates

    return schema_coordinates(graphql_schema())


def _load(file: Path | None) -> Policy:
    path = file or default_policy_path()
    try:
        return load_policy(path, gateway_coordinates())
    except PolicyError as exc:
        typer.echo(f"policy invalid:\n{exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def check(
    file: FileArgument = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when there are warnings.")] = False,
) -> None:
    """Validate the policy against the schema; print its version, counts and warnings."""
    policy = _load(file)
    statuses = [p.status for p in policy.purposes.values()]
    typer.echo(f"policy OK: {policy.path}")
    typer.echo(f"versie: {policy.label}")
    typer.echo(f"version: {policy.version}")
    typer.echo(
        f"organisations: {len(policy.organisations)}, purposes: {len(policy.purposes)} "
        f"(actief {statuses.count('actief')}, opgeschort {statuses.count('opgeschort')}, "
        f"verboden {statuses.count('verboden')}), rules: {len(policy.rules)}, "
        f"coordinates: {len(policy.coordinates)}"
    )
    for warning in policy.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"warnings: {len(policy.warnings)}")
    if strict and policy.warnings:
        raise typer.Exit(1)


@app.command()
def explain(
    org: Annotated[str, typer.Option("--org", help="Organisation id, e.g. NVIK.")],
    role: Annotated[list[str], typer.Option("--role", help="A role; repeat for several.")],
    doelbinding: Annotated[str, typer.Option("--doelbinding", help="Purpose id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list refused coordinates with the reason.")
    ] = False,
    policy_file: Annotated[
        Path | None, typer.Option("--policy", help="Policy file (default as for check).")
    ] = None,
) -> None:
    """Show which coordinates a caller gets for a purpose, and the rule behind each."""
    policy = _load(policy_file)
    if org not in policy.organisations:
        known = ", ".join(policy.organisations)
        typer.echo(f"unknown organisation {org!r} (known: {known})", err=True)
        raise typer.Exit(2)
    if doelbinding not in policy.purposes:
        typer.echo(
            f"unknown purpose {doelbinding!r} (known: {', '.join(policy.purposes)})", err=True
        )
        raise typer.Exit(2)
    purpose = policy.purposes[doelbinding]
    rows = [row for row in policy_mod.explain(policy, org, role, doelbinding) if show_all or row[1]]
    granted = doelbinding in policy.purposes_for(org, role)
    if as_json:
        document = {
            "beleidsversie": policy.version,
            "organisatie": org,
            "rollen": sorted(set(role)),
            "doelbinding": doelbinding,
            "toegekend": granted,
            "status": purpose.status,
            "status_reden": purpose.status_reason,
            "velden": [
                {"coordinaat": c, "toegestaan": given, "reden": reason} for c, given, reason in rows
            ],
        }
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{org} {'+'.join(sorted(set(role)))} {doelbinding} (policy {policy.short_version})")
    if not granted:
        typer.echo("purpose not granted to these roles (PURPOSE_NOT_GRANTED)")
    if not purpose.active:
        typer.echo(f"purpose {purpose.status}: {purpose.status_reason}")
    width = max((len(c) for c, _, _ in rows), default=0)
    for coordinate, given, reason in rows:
        mark = "allow" if given else "deny "
        typer.echo(f"{mark}  {coordinate:<{width}}  {reason}")


@app.command()
def render(
    file: FileArgument = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """Render the processing register / DPIA annex as Markdown."""
    text = render_markdown(_load(file))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")


@app.command()
def purposes(file: FileArgument = None) -> None:
    """Print the purposes with their processing activities (X-Doelbinding, X-Verwerking) and who
    they are granted to, as a Markdown table (the README's table for integrators)."""
    typer.echo(purposes_table(_load(file)), nl=False)
