"""The gateway pieces the soak and chaos runs use, imported in one place."""

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.assembly.policy_file import load_policy
from gateway.audit.stores import open_store
from gateway.config import DEFAULT_POLICY, Settings
from gateway.execution.schema import graphql_schema, schema_coordinates
from gateway.policy.model import Policy
from mocks import Population


def coordinates() -> dict[str, str]:
    """The gateway schema's coordinates (``Type.field`` → named type)."""
    return schema_coordinates(graphql_schema())


__all__ = [
    "DEFAULT_POLICY",
    "Policy",
    "Population",
    "Settings",
    "coordinates",
    "load_or_create_dev_key",
    "load_policy",
    "mint_dev_token",
    "open_store",
]
