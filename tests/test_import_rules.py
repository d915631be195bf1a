"""The house rules of the code, checked over the source with ``ast`` (no imports executed).

* Rooms are ranked along the request path; a module imports only its own room and rooms of a
  lower rank (arrows only go down). A room not in the table fails the test: a new room needs a
  place in the picture (docs/design.md) first.
* The gateway core never imports ``mocks``: only the composition root (``gateway.assembly``,
  for the embedded default) and the command line (``ketenpoort mocks``) do.
* ``gateway.policy`` does no I/O: it parses text handed to it and decides.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: room → rank. Higher ranks are nearer the caller; foundation modules are rank 0.
RANKS: dict[str, int] = {
    "gateway.cli": 8,
    "gateway.console": 7,
    "gateway.http": 7,
    "gateway.assembly": 6,
    "gateway.pipeline": 5,
    "gateway.execution": 4,
    "gateway.admission": 3,
    "gateway.planning": 3,
    "gateway.proportionality": 3,
    "gateway.audit": 2,
    "resolvers": 2,
    "gateway.policy": 1,
    "gateway.observability": 1,
    "gateway.errors": 0,
    "gateway.config": 0,
    "gateway.keyfile": 0,
    "gateway.domain": 0,
    "gateway.identifiers": 0,
    "gateway.internals": 0,
    "gateway": 0,  # the package itself (version)
}
MAY_IMPORT_MOCKS = ("gateway.assembly", "gateway.cli")
#: Calls and modules that read or write files, sockets or processes.
IO_CALLS = frozenset({"open", "read_text", "read_bytes", "write_text", "write_bytes", "unlink"})
IO_MODULES = frozenset({"os", "io", "socket", "subprocess", "shutil", "httpx", "sqlite3"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> list[Path]:
    return sorted(p for top in ("gateway", "resolvers") for p in (ROOT / top).rglob("*.py"))


def room_of(module: str) -> str:
    """The longest room name that is ``module`` or a prefix of it."""
    best = ""
    for room in RANKS:
        if (module == room or module.startswith(room + ".")) and len(room) > len(best):
            best = room
    if not best:
        raise AssertionError(f"{module} is in no room of RANKS")
    return best


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from gateway import domain`` names a module too.
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _is_project(module: str) -> bool:
    return module.split(".")[0] in {"gateway", "resolvers", "mocks"}


def _violations(extra: dict[str, str] | None = None) -> list[str]:
    """Every upward or forbidden import; ``extra`` adds modules (name → source) to the tree."""
    texts = {_module_name(p): p.read_text(encoding="utf-8") for p in _sources()}
    texts.update(extra or {})
    problems: list[str] = []
    known = set(texts)
    for module, text in sorted(texts.items()):
        room = room_of(module)
        for line, target in _imports(ast.parse(text)):
            where = f"{module}:{line}"
            if target.split(".")[0] == "mocks":
                if not room.startswith(MAY_IMPORT_MOCKS):
                    problems.append(
                        f"{where}: {module} imports {target} (only the composition root may)"
                    )
                continue
            if not _is_project(target) or (
                target not in known and "." in target and target.rsplit(".", 1)[0] in known
            ):
                continue  # a third-party module, or a name imported from a project module
            target_room = room_of(target)
            if target_room != room and RANKS[target_room] >= RANKS[room]:
                problems.append(
                    f"{where}: {room} (rank {RANKS[room]}) imports {target_room} "
                    f"(rank {RANKS[target_room]}): arrows only go down"
                )
    return problems


def test_arrows_only_go_down() -> None:
    assert _violations() == []


def test_every_module_has_a_room() -> None:
    for path in _sources():
        room_of(_module_name(path))


def test_policy_does_no_io() -> None:
    problems: list[str] = []
    for path in sorted((ROOT / "gateway" / "policy").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, target in _imports(tree):
            if target.split(".")[0] in IO_MODULES:
                problems.append(f"{path.name}:{line} imports {target}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = (
                    node.func.attr
                    if isinstance(node.func, ast.Attribute)
                    else (node.func.id if isinstance(node.func, ast.Name) else "")
                )
                if name in IO_CALLS:
                    problems.append(f"{path.name}:{node.lineno} calls {name}()")
    assert problems == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from gateway.http.app import create_app\n", "arrows only go down"),
        ("import mocks\n", "only the composition root may"),
    ],
)
def test_the_rule_catches_an_upward_import(source: str, expected: str) -> None:
    """The checker itself: an upward import planted in the policy room is reported."""
    assert any(expected in v for v in _violations({"gateway.policy.planted": source}))
