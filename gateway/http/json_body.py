"""What a JSON body from outside may hold: Unicode text only.

JSON may escape a lone surrogate (``"\\ud800"``); Python decodes it into a ``str`` that is no
Unicode text and that UTF-8 cannot encode. Such a string would break whatever echoes it (an
answer, a registry call, a log line), so a body holding one anywhere — key or value, at any
depth — is refused once, right after parsing, before anything else reads it.
"""

from __future__ import annotations

import re
from typing import Any, Final

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
