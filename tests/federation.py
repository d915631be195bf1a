"""Composition of the subgraph mocks with Apollo's library (``tests/node/compose.mjs``).

``python -m tests.federation`` (``make supergraph``) writes ``mocks/supergraph.graphql`` again; it
refuses when composition reports an error or a hint.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from mocks.federation import SUPERGRAPH, subgraphs
from tests.tools import run_node


def compose() -> dict[str, Any]:
    """``{"errors", "hints", "supergraphSdl"}`` for the subgraph mocks at their default URLs."""
    done = run_node("compose.mjs", stdin=json.dumps(subgraphs()), timeout=120)
    if not done.stdout.strip():
        raise AssertionError(f"composition did not run:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def supergraph_text(result: dict[str, Any]) -> str:
    """The SDL as the artifact holds it (one trailing newline)."""
    return str(result["supergraphSdl"]).rstrip("\n") + "\n"


def main() -> int:
    result = compose()
    if result["errors"] or result["hints"]:
        print(json.dumps({k: result[k] for k in ("errors", "hints")}, indent=1), file=sys.stderr)
        return 1
    SUPERGRAPH.write_text(supergraph_text(result), encoding="utf-8")
    print(f"{SUPERGRAPH} written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
