"""The COA and IND mocks as a federation: their subgraph SDLs and the composed supergraph.

``supergraph.graphql`` beside this module is the supergraph that Apollo's composition library
(``@apollo/composition``) makes of the two subgraphs as ``ketenpoort mocks serve`` serves them
(:data:`DEFAULT_URLS`); a test composes them afresh and checks it matches, with no errors and no
hints. ``make supergraph`` writes it again after a subgraph schema changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from mocks.coa import schema as coa_schema
from mocks.ind import schema as ind_schema

SUPERGRAPH: Final = Path(__file__).resolve().with_name("supergraph.graphql")
#: Where ``ketenpoort mocks serve`` (default port) serves the subgraphs.
DEFAULT_URLS: Final = {
    "coa": "http://127.0.0.1:8100/coa/graphql",
    "ind": "http://127.0.0.1:8100/ind/graphql",
}


def subgraphs(urls: dict[str, str] | None = None) -> list[dict[str, str]]:
    """``[{"name", "url", "sdl"}]`` of the subgraph mocks: what composition takes."""
    urls = urls or DEFAULT_URLS
    return [
        {"name": "coa", "url": urls["coa"], "sdl": coa_schema.as_str()},
        {"name": "ind", "url": urls["ind"], "sdl": ind_schema.as_str()},
    ]


def supergraph_sdl(coa_url: str | None = None, ind_url: str | None = None) -> str:
    """The supergraph SDL, routing to ``coa_url`` / ``ind_url`` (default: :data:`DEFAULT_URLS`).

    Raises :class:`ValueError` for a URL that is not http(s) with a host.
    """
    text = SUPERGRAPH.read_text(encoding="utf-8")
    for name, url in (("coa", coa_url), ("ind", ind_url)):
        if url is None:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or '"' in url:
            raise ValueError(f"--{name}-url must be an http(s) URL, got {url!r}")
        default = f'@join__graph(name: "{name}", url: "{DEFAULT_URLS[name]}")'
        if default not in text:
            raise ValueError(f"{SUPERGRAPH.name} does not route {name} to {DEFAULT_URLS[name]}")
        text = text.replace(default, f'@join__graph(name: "{name}", url: "{url}")')
    return text
