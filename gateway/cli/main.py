"""``ketenpoort``: serve, token, schema, documents, policy, audit, cache, mocks.

Commands print results to stdout and problems as one line to stderr with a non-zero exit; no
stack traces for bad input.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from gateway.cli.audit import app as audit_app
from gateway.cli.cache import app as cache_app
from gateway.cli.policy import app as policy_app
from gateway.config import ConfigError, Settings
from mocks.cli import app as mocks_app

app = typer.Typer(
    help="Ketenpoort: purpose-bound, fully accounted GraphQL access to the chain registries.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(cache_app, name="cache")
app.add_typer(mocks_app, name="mocks")
documents_app = typer.Typer(help="Trusted (persisted) documents.", no_args_is_help=True)
app.add_typer(documents_app, name="documents")


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"ketenpoort: {message}", err=True)
    raise typer.Exit(code)


def settings_from_env(**overrides: object) -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        fail(str(exc))
    changes = {k: v for k, v in overrides.items() if v is not None}
    return settings.with_(**changes) if changes else settings


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (KETENPOORT_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (KETENPOORT_PORT).")] = None,
    mode: Annotated[
        str | None, typer.Option(help="development|production (KETENPOORT_MODE).")
    ] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy file (KETENPOORT_POLICY).")] = None,
    audit_store: Annotated[
        str | None, typer.Option(help="sqlite:///PATH | postgresql://... (KETENPOORT_AUDIT_STORE).")
    ] = None,
    cache: Annotated[
        str | None, typer.Option(help="memory | redis://... (KETENPOORT_CACHE).")
    ] = None,
    quota_store: Annotated[
        str | None, typer.Option(help="memory | redis://... (KETENPOORT_QUOTA_STORE).")
    ] = None,
    traces: Annotated[
        str | None, typer.Option(help="console | file:PATH | otlp:URL | none (KETENPOORT_TRACES).")
    ] = None,
    state: Annotated[Path | None, typer.Option(help="State directory (KETENPOORT_STATE).")] = None,
    trusted_documents: Annotated[
        Path | None, typer.Option(help="Execute only these documents (manifest).")
    ] = None,
) -> None:
    """Run the gateway (mock registries in-process unless KETENPOORT_REGISTRIES names them)."""
    import asyncio

    from gateway.http.server import StartError
    from gateway.http.server import serve as serve_gateway
    from gateway.observability.tracing import check_traces_spec

    if mode is not None and mode not in ("development", "production"):
        fail("--mode must be development or production")
    settings = settings_from_env(
        host=host,
        port=port,
        mode=mode,
        policy=policy,
        audit_store=audit_store,
        cache=cache,
        quota_store=quota_store,
        traces=traces,
        state_dir=state,
        trusted_documents=trusted_documents,
    )
    # Validate the policy before binding the port: a bad policy refuses the start, clearly.
    from gateway.assembly.policy_file import load_policy
    from gateway.cli.policy import gateway_coordinates
    from gateway.policy.model import PolicyError

    try:
        load_policy(settings.policy, gateway_coordinates())
    except (PolicyError, OSError) as exc:
        fail(f"policy refused: {exc}", 1)
    try:
        check_traces_spec(settings.traces_spec)
    except ValueError as exc:
        fail(str(exc))

    def announce() -> None:
        typer.echo(
            f"Ketenpoort on http://{settings.host}:{settings.port}/graphql ({settings.mode})",
            err=True,
        )

    try:
        asyncio.run(serve_gateway(settings, announce))
    except StartError as exc:
        fail(f"cannot start: {exc}", 1)


@app.command()
def console(
    host: Annotated[
        str | None, typer.Option(help="Bind address (KETENPOORT_CONSOLE_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (KETENPOORT_CONSOLE_PORT).")] = None,
    session: Annotated[
        float | None,
        typer.Option(help="Session lifetime in seconds (KETENPOORT_CONSOLE_SESSION)."),
    ] = None,
) -> None:
    """Run the accountability console: the trail in a browser, for security teams and the FG.

    It reads the audit store of the same settings as ``serve`` (KETENPOORT_STATE,
    KETENPOORT_AUDIT_STORE, KETENPOORT_POLICY) and never the registries.
    """
    import uvicorn

    from gateway.assembly.runtime import build_authenticator, load_gateway_policy
    from gateway.console.app import create_app as create_console
    from gateway.console.settings import ConsoleSettings
    from gateway.policy.model import PolicyError

    settings = settings_from_env()
    try:
        console_settings = ConsoleSettings.from_env()
        changes = {"host": host, "port": port, "session_seconds": session}
        console_settings = console_settings.with_(
            **{k: v for k, v in changes.items() if v is not None}
        )
    except ConfigError as exc:
        fail(str(exc))
    try:
        load_gateway_policy(settings)
        build_authenticator(settings)
    except (PolicyError, OSError, ValueError) as exc:
        fail(f"console refused: {exc}", 1)
    typer.echo(
        f"Ketenpoort console on http://{console_settings.host}:{console_settings.port}/ "
        f"(audit store {settings.audit_store_url.split('://')[0]}, {settings.mode})",
        err=True,
    )
    # No access log: search URLs carry the V-nummers the viewer typed.
    uvicorn.run(
        create_console(settings, console_settings),
        host=console_settings.host,
        port=console_settings.port,
        log_level="warning",
        access_log=False,
    )


@app.command()
def token(
    org: Annotated[str, typer.Option(help="Organisation id in the policy, e.g. NVIK.")],
    role: Annotated[list[str], typer.Option(help="Role (repeatable).")],
    doelbinding: Annotated[list[str], typer.Option(help="Granted purpose (repeatable).")],
    sub: Annotated[str, typer.Option(help="Officer id (the token's sub).")] = "medewerker-001",
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
    state: Annotated[Path | None, typer.Option(help="State directory (KETENPOORT_STATE).")] = None,
    act_for_officers: Annotated[
        bool,
        typer.Option(
            help="An application token that may name the officer it acts for (X-Gebruiker)."
        ),
    ] = False,
) -> None:
    """Mint a development token (last line of the output). Refused outside development mode."""
    from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
    from gateway.assembly.policy_file import load_policy
    from gateway.cli.policy import gateway_coordinates
    from gateway.policy.model import PolicyError

    settings = settings_from_env(state_dir=state)
    if not settings.development:
        fail("development tokens are refused outside development mode", 1)
    if not 0 < ttl <= 86_400:
        fail("--ttl must be between 1 and 86400 seconds")
    try:
        policy = load_policy(settings.policy, gateway_coordinates())
    except (PolicyError, OSError) as exc:
        fail(f"policy refused: {exc}", 1)
    organisation = policy.organisations.get(org)
    if organisation is None:
        fail(f"unknown organisation {org!r} (known: {', '.join(sorted(policy.organisations))})")
    unknown = [p for p in doelbinding if p not in policy.purposes]
    if unknown:
        fail(f"unknown purpose(s): {', '.join(unknown)}")
    # A role the policy does not know for the organisation matches no rule: such a token would
    # only ever be refused, so say so now instead of at the first query.
    known_roles = organisation.roles or tuple(
        sorted({r for rule in policy.rules if rule.organisation == org for r in rule.roles} - {"*"})
    )
    unknown_roles = [r for r in role if r not in known_roles]
    if unknown_roles:
        fail(
            f"unknown role(s) for {org}: {', '.join(unknown_roles)} "
            f"(known: {', '.join(known_roles) or 'none'})"
        )
    key = load_or_create_dev_key(settings.state_dir)
    typer.echo(
        f"# development token for {sub} ({org}, roles {', '.join(role)}), valid {ttl} s", err=True
    )
    typer.echo(
        mint_dev_token(
            key,
            issuer=settings.issuer,
            audience=settings.audience,
            subject=sub,
            oin=organisation.oin,
            organisation=org,
            roles=role,
            purposes=doelbinding,
            ttl=ttl,
            act_for_officers=act_for_officers,
        )
    )


@app.command()
def schema(
    org: Annotated[str, typer.Option(help="Organisation id.")],
    role: Annotated[list[str], typer.Option(help="Role (repeatable).")],
    doelbinding: Annotated[str, typer.Option(help="Purpose.")],
) -> None:
    """Print the SDL this caller may see for this purpose (for client generation)."""

    from gateway.assembly.policy_file import load_policy
    from gateway.execution.introspection import visible_sdl
    from gateway.execution.schema import graphql_schema, schema_coordinates
    from gateway.policy.model import PolicyError

    settings = settings_from_env()
    try:
        policy = load_policy(settings.policy, schema_coordinates(graphql_schema()))
    except (PolicyError, OSError) as exc:
        fail(f"policy refused: {exc}", 1)
    if org not in policy.organisations or doelbinding not in policy.purposes:
        fail("unknown organisation or purpose")
    grant = policy.grant(org, role, doelbinding)
    sdl = visible_sdl(graphql_schema(), grant.allowed)
    if not sdl:
        fail("nothing in the schema is visible to this caller for this purpose", 1)
    typer.echo(sdl)


@documents_app.command("build")
def documents_build(
    directory: Annotated[Path, typer.Argument(help="Folder with partners' .graphql files.")],
    output: Annotated[Path | None, typer.Option(help="Manifest file (default: stdout).")] = None,
) -> None:
    """Build the trusted-documents manifest ``{sha256: document}`` from ``.graphql`` files."""
    from graphql import GraphQLError, parse

    if not directory.is_dir():
        fail(f"{directory} is not a directory")
    manifest: dict[str, str] = {}
    for path in sorted(directory.rglob("*.graphql")):
        text = path.read_text(encoding="utf-8")
        try:
            parse(text)
        except GraphQLError as exc:
            fail(f"{path}: {exc.message}", 1)
        manifest[hashlib.sha256(text.encode()).hexdigest()] = text
    if not manifest:
        fail(f"no .graphql files under {directory}", 1)
    rendered = json.dumps(manifest, indent=2, sort_keys=True)
    if output is None:
        typer.echo(rendered)
    else:
        output.write_text(rendered + "\n", encoding="utf-8")
        typer.echo(f"{len(manifest)} trusted documents written to {output}", err=True)


@app.command()
def witness(
    log: Annotated[str, typer.Option("--log", help="The gateway's base URL.")],
    key: Annotated[
        Path, typer.Option("--key", help="This witness's cosigning key (created if absent).")
    ],
    state: Annotated[Path, typer.Option("--state", help="The witness's state directory.")],
    log_key: Annotated[
        str | None,
        typer.Option("--log-key", help="The log's verifier key (pinned in --state on first use)."),
    ] = None,
    name: Annotated[
        str, typer.Option("--name", help="Key name of a new witness key.")
    ] = "witness.ketenpoort.local",
    check_entries: Annotated[
        bool,
        typer.Option(
            "--check-entries",
            help="Also check the stored entries up to the checkpoint, over HTTP, like "
            "`audit verify --checkpoint` (needs a trail reader's token).",
        ),
    ] = False,
    token_env: Annotated[
        str | None,
        typer.Option("--token-env", help="Environment variable holding the bearer token."),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding the bearer token.")
    ] = None,
) -> None:
    """Cosign the log's latest checkpoint if it extends the last one cosigned (and, with
    --check-entries, its entries match); else exit 1."""
    from gateway.cli.audit_log import witness_command, witness_token

    token = witness_token(check_entries, token_env, token_file)
    witness_command(log, key, state, log_key, name, token)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
