"""Registry clients: one module per chain registry (BVV, COA, IND)."""

from resolvers.base import RegistryClient, RegistryUnavailable
from resolvers.bvv import BvvAnswer, BvvClient
from resolvers.subgraph import CoaClient, IndClient, SubgraphClient

__all__ = [
    "BvvAnswer",
    "BvvClient",
    "CoaClient",
    "IndClient",
    "RegistryClient",
    "RegistryUnavailable",
    "SubgraphClient",
]
