"""Text that cannot be stored or sent back: lone UTF-16 surrogates, which valid JSON may still carry."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from search.errors import BadInput

# JSON's "\ud800" escapes decode to a str Python holds but cannot encode as UTF-8 (SQLite, the tokenizer and the
# response all need UTF-8). A correct pair ("\ud83d\ude00") is joined by the JSON decoder, so only lone halves remain.
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(field: str, value: Any) -> None:
    """Raise BadInput naming `field` (and the key or position inside it) if `value` holds a lone surrogate.

    Strings, and strings nested in lists and mappings (keys too), are checked; other values pass.
    """
    if isinstance(value, str):
        if match := _SURROGATE.search(value):
            code = f"U+{ord(match.group()):04X}"
            raise BadInput(
                f"{field}: lone surrogate {code} at character {match.start()}; that is not a character. Send valid "
                "Unicode (a character beyond U+FFFF is a \\uD8xx\\uDCxx pair in JSON, or plain UTF-8)"
            )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_text(f"{field} key", key)
            check_text(f"{field}.{key}", item)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for k, item in enumerate(value):
            check_text(f"{field}[{k}]", item)


def printable(text: str) -> str:
    """`text` with lone surrogates written as \\udXXX escapes, so a message that quotes input can be encoded."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
