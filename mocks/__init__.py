"""The mock chain registries (BVV, COA, IND) as in-process ASGI apps over one synthetic population.

``create_registries()`` builds all three over one :class:`~mocks.data.Population`;
``combined_app()`` mounts them under ``/bvv``, ``/coa`` and ``/ind`` for standalone serving.
"""

from mocks.app import Registries, combined_app, create_registries
from mocks.data import Population
from mocks.registry import Faults, MockRegistry, ServedCall

__all__ = [
    "Faults",
    "MockRegistry",
    "Population",
    "Registries",
    "ServedCall",
    "combined_app",
    "create_registries",
]
