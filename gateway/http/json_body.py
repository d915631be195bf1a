"""What a JSON body from outside may hold: Unicode text only.

JSON may escape a lone surrogate (``"\\ud800"``); Python decodes it into a ``str`` that is no
Unicode text and that UTF-8 cannot encode. Such a string would break whatever echoes it (an
answer, a registry call, a log line), so a body holding one anywhere — key or value, at any
depth — is refused once, right after parsing, before anything else reads it.

:func:`read_json_object` reads the small JSON object bodies of the explorer's and the admin
endpoints: ``application/json``, at most a given size (read no further), an object, Unicode text.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from starlette.requests import Request

from gateway.errors import Code

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
#: The message of the refusal (``BAD_USER_INPUT``).
NOT_UNICODE: Final = "The body holds a lone surrogate escape: JSON strings must be Unicode text."


def holds_lone_surrogate(value: Any) -> bool:
    """Whether any string in the parsed JSON ``value`` (keys included) holds a lone surrogate.

    Walks iteratively: a body nested as deep as the parser allows costs no recursion.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class BodyRefused(Exception):
    """A body :func:`read_json_object` does not take: a stable code, its HTTP status, a message."""

    def __init__(self, code: Code, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object body; :class:`BodyRefused` when it is not ``application/json``
    (415), longer than ``limit`` bytes (413, read no further), not a JSON object or not Unicode
    text (400 ``BAD_USER_INPUT``)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != (
        "application/json"
    ):
        raise BodyRefused(
            Code.UNSUPPORTED_MEDIA_TYPE, 415, "Send a JSON object (Content-Type: application/json)."
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyRefused(Code.REQUEST_TOO_LARGE, 413, f"The body is over {limit} bytes.")
    try:
        payload = json.loads(bytes(body))
    except (ValueError, RecursionError):
        raise BodyRefused(Code.BAD_USER_INPUT, 400, "The body is not JSON.") from None
    if not isinstance(payload, dict):
        raise BodyRefused(Code.BAD_USER_INPUT, 400, "The body is not a JSON object.")
    if holds_lone_surrogate(payload):
        raise BodyRefused(Code.BAD_USER_INPUT, 400, NOT_UNICODE)
    return payload
