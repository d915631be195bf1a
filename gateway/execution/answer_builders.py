"""Answer builders from shapes: generated Python source (``compile()``) or a tree of closures.

A builder turns one registry object into its response object and appends graphql-core's errors
(refusals, registry failures) to the request's error list, in execution order: depth first, a
non-null field's error nulls its nearest nullable ancestor and stops its later siblings, as
graphql-core's synchronous execution does. Anything it does not expect (a value of the wrong
kind, a null in a non-null position, a serializer refusing a value) raises :class:`Fallback`:
the request is then answered by strawberry, so the odd case gets strawberry's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import Undefined

from gateway.errors import GatewayError
from gateway.execution.answer_shape import FieldShape, ObjectShape, Where

#: (value, parent path, errors) -> response object. Paths are linked tuples (parent, key).
Builder = Callable[[dict[str, Any], Any, list[dict[str, Any]]], dict[str, Any]]


class Fallback(Exception):
    """This request's data is not what the builder expects: let strawberry answer it."""


class Null(Exception):
    """A non-null field errored: its object is null (caught at the nearest nullable place)."""


def path_list(path: Any) -> list[str | int]:
    """A linked path ``(parent, key)`` as graphql's list of keys and indices."""
    keys: list[str | int] = []
    while path is not None:
        keys.append(path[1])
        path = path[0]
    keys.reverse()
    return keys


def located(error: GatewayError, where: Where, path: Any) -> dict[str, Any]:
    """A gateway error as graphql-core locates it and :func:`format_error` formats it."""
    return {
        "message": str(error),
        "locations": where.locations,
        "path": path_list(path),
        "extensions": dict(error.extensions),
    }


def odd(x: Any, errors: list[dict[str, Any]], shape: FieldShape, path: Any, nonnull: bool) -> Any:
    """A value of no expected kind: a gateway error becomes an error here, anything else is
    strawberry's to answer. Returns the null that takes the value's place."""
    if isinstance(x, GatewayError):
        errors.append(located(x, shape.locations, path))
        if nonnull:
            raise Null
        return None
    raise Fallback


def leaf(x: Any, errors: list[dict[str, Any]], shape: FieldShape, path: Any, nonnull: bool) -> Any:
    """A leaf value off the fast path: serialized as graphql-core does, or an error."""
    if x is None:
        if nonnull:
            raise Fallback
        return None
    if isinstance(x, BaseException):
        return odd(x, errors, shape, path, nonnull)
    try:
        serialized = shape.serialize(x)
    except Exception:
        raise Fallback from None
    if serialized is None or serialized is Undefined:
        raise Fallback
    return serialized


def item(x: Any, errors: list[dict[str, Any]], shape: FieldShape, path: Any) -> Any:
    """A list item that is not an object."""
    if x is None:
        if shape.item_nonnull:
            raise Fallback
        return None
    return odd(x, errors, shape, path, shape.item_nonnull)


# ---- generated source ---------------------------------------------------------------------------


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.functions = 0

    def constant(self, value: Any) -> str:
        name = f"K{len(self.constants)}"
        self.constants[name] = value
        return name

    def object(self, shape: ObjectShape) -> str:
        name = f"o{self.functions}"
        self.functions += 1
        body: list[str] = [f"def {name}(v, p, E):", "    r = {}"]
        for f in shape.fields:
            body += ["    " + line for line in self.field(f)]
        body.append("    return r")
        self.lines += body
        return name

    def field(self, f: FieldShape) -> list[str]:
        key = repr(f.key)
        if f.kind == "typename":
            return [f"r[{key}] = {shape_name(f)!r}"]
        s = self.constant(f)
        if f.kind == "refused":
            lines = [f"E.append(located({s}.refusal, {s}.locations, (p, {key})))"]
            return [*lines, "raise Null"] if f.nonnull else [*lines, f"r[{key}] = None"]
        lines = [f"x = v[{f.name!r}]"]
        if f.is_list:
            lines += ["if type(x) is list:", *("    " + line for line in self.items(f, s))]
            lines += ["else:", f"    r[{key}] = leaf_none(x, E, {s}, (p, {key}), {f.nonnull})"]
            return lines
        if f.kind == "object":
            assert f.child is not None
            child = self.object(f.child)
            call = f"r[{key}] = {child}(x, (p, {key}), E)"
            lines += ["if type(x) is dict:"]
            if f.nonnull:
                lines += [f"    {call}"]
            else:
                lines += [
                    "    try:",
                    f"        {call}",
                    "    except Null:",
                    f"        r[{key}] = None",
                ]
            lines += [
                "elif x is None:",
                "    raise Fallback" if f.nonnull else f"    r[{key}] = None",
            ]
            lines += ["else:", f"    r[{key}] = odd(x, E, {s}, (p, {key}), {f.nonnull})"]
            return lines
        if f.fast is not None:
            fast = self.constant(f.fast)
            if f.nonnull:
                lines += [
                    f"r[{key}] = x if type(x) is {fast} else leaf(x, E, {s}, (p, {key}), True)"
                ]
            else:
                lines += [
                    f"r[{key}] = x if x is None or type(x) is {fast} "
                    f"else leaf(x, E, {s}, (p, {key}), False)"
                ]
            return lines
        return [*lines, f"r[{key}] = leaf(x, E, {s}, (p, {key}), {f.nonnull})"]

    def items(self, f: FieldShape, s: str) -> list[str]:
        key = repr(f.key)
        lines = [f"q = (p, {key})", "out = []"]
        loop = ["for n, i in enumerate(x):"]
        if f.kind == "object":
            assert f.child is not None
            child = self.object(f.child)
            loop += ["    if type(i) is dict:"]
            if f.item_nonnull:
                loop += [f"        out.append({child}(i, (q, n), E))"]
            else:
                loop += [
                    "        try:",
                    f"            out.append({child}(i, (q, n), E))",
                    "        except Null:",
                    "            out.append(None)",
                ]
            loop += ["    else:", f"        out.append(item(i, E, {s}, (q, n)))"]
        else:
            fast = self.constant(f.fast) if f.fast is not None else "NoFast"
            loop += [
                f"    out.append(i if type(i) is {fast} else leaf(i, E, {s}, (q, n), "
                f"{f.item_nonnull}))"
            ]
        if f.item_nonnull and not f.nonnull:  # an item's error nulls the whole list
            return [
                *lines,
                "try:",
                *("    " + line for line in loop),
                f"    r[{key}] = out",
                "except Null:",
                f"    r[{key}] = None",
            ]
        return lines + loop + [f"r[{key}] = out"]


def shape_name(f: FieldShape) -> str:
    return f.type_name


class _NoFast:
    """A type no value has: the fast path never applies."""


def leaf_none(
    x: Any, errors: list[dict[str, Any]], shape: FieldShape, path: Any, nonnull: bool
) -> Any:
    """A list field whose value is not a list: null is null, a gateway error is an error."""
    if x is None:
        if nonnull:
            raise Fallback
        return None
    return odd(x, errors, shape, path, nonnull)


def generate(shapes: list[ObjectShape]) -> tuple[list[Builder], str]:
    """The builders of ``shapes`` as generated Python source, compiled in one go (and the
    source, for reading)."""
    source = _Source()
    tops = [source.object(shape) for shape in shapes]
    text = "\n".join(source.lines) + "\n"
    namespace: dict[str, Any] = {
        "located": located,
        "odd": odd,
        "leaf": leaf,
        "leaf_none": leaf_none,
        "item": item,
        "Null": Null,
        "Fallback": Fallback,
        "NoFast": _NoFast,
        **source.constants,
    }
    # Source generated here from the schema's names and repr()'d response keys, never from
    # caller text as code: aliases are validated GraphQL names and go in through repr().
    exec(compile(text, "<ketenpoort answer builder>", "exec"), namespace)  # noqa: S102
    return [namespace[top] for top in tops], text


# ---- closures ----------------------------------------------------------------------------------


def closures(shape: ObjectShape) -> Builder:
    """The builder of ``shape`` as a tree of closures (the alternative measured in bench/)."""
    steps = [_step(f) for f in shape.fields]

    def build(v: dict[str, Any], p: Any, errors: list[dict[str, Any]]) -> dict[str, Any]:
        r: dict[str, Any] = {}
        for step in steps:
            step(v, p, errors, r)
        return r

    return build


Step = Callable[[dict[str, Any], Any, list[dict[str, Any]], dict[str, Any]], None]


def _step(f: FieldShape) -> Step:
    key, name, nonnull = f.key, f.name, f.nonnull
    if f.kind == "typename":
        type_name = f.type_name

        def typename(v: Any, p: Any, errors: Any, r: dict[str, Any]) -> None:
            r[key] = type_name

        return typename
    if f.kind == "refused":
        refusal = f.refusal
        assert refusal is not None

        def refused(v: Any, p: Any, errors: list[dict[str, Any]], r: dict[str, Any]) -> None:
            errors.append(located(refusal, f.locations, (p, key)))
            if nonnull:
                raise Null
            r[key] = None

        return refused
    child = closures(f.child) if f.child is not None else None
    if f.is_list:
        item_nonnull = f.item_nonnull
        fast = f.fast

        def listed(v: Any, p: Any, errors: list[dict[str, Any]], r: dict[str, Any]) -> None:
            x = v[name]
            if type(x) is not list:
                r[key] = leaf_none(x, errors, f, (p, key), nonnull)
                return
            q = (p, key)
            out: list[Any] = []
            try:
                for n, i in enumerate(x):
                    if child is not None:
                        if type(i) is dict:
                            try:
                                out.append(child(i, (q, n), errors))
                            except Null:
                                if item_nonnull:
                                    raise
                                out.append(None)
                        else:
                            out.append(item(i, errors, f, (q, n)))
                    else:
                        out.append(
                            i if type(i) is fast else leaf(i, errors, f, (q, n), item_nonnull)
                        )
            except Null:
                if nonnull:
                    raise
                r[key] = None
                return
            r[key] = out

        return listed
    if child is not None:

        def obj(v: Any, p: Any, errors: list[dict[str, Any]], r: dict[str, Any]) -> None:
            x = v[name]
            if type(x) is dict:
                try:
                    r[key] = child(x, (p, key), errors)
                except Null:
                    if nonnull:
                        raise
                    r[key] = None
            elif x is None:
                if nonnull:
                    raise Fallback
                r[key] = None
            else:
                r[key] = odd(x, errors, f, (p, key), nonnull)

        return obj
    fast = f.fast if f.fast is not None else _NoFast

    def scalar(v: Any, p: Any, errors: list[dict[str, Any]], r: dict[str, Any]) -> None:
        x = v[name]
        if type(x) is fast or (x is None and not nonnull):
            r[key] = x
        else:
            r[key] = leaf(x, errors, f, (p, key), nonnull)

    return scalar
