"""Reading the policy file: the one place the policy touches the file system."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from gateway.execution.schema import graphql_schema, non_null_coordinates
from gateway.policy.model import Policy, PolicyError
from gateway.policy.parsing import parse_policy


def load_policy(
    path: Path, coordinates: Mapping[str, str], non_null: Collection[str] | None = None
) -> Policy:
    """Read and validate the policy at ``path`` against the schema's ``coordinates`` and its
    non-null fields (``non_null``; by default those of the served schema).

    Raises :class:`PolicyError` naming the file when it cannot be read, is not valid YAML or does
    not validate (see :func:`gateway.policy.parsing.parse_policy`).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    if non_null is None:
        non_null = non_null_coordinates(graphql_schema())
    return parse_policy(data, path, coordinates, non_null=non_null)
