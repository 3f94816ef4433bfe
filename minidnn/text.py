"""Text from untrusted sources (file attributes, user paths) made safe to print on one line."""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def printable(text: str, limit: int = 300, keep_newlines: bool = False) -> str:
    """``text`` with control and bidi characters escaped (``\\x1b``) and cut to ``limit``
    characters, saying how many were left out; newlines kept only if ``keep_newlines``."""
    text = str(text)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]

    def escape(m: re.Match) -> str:
        c = m.group()
        if keep_newlines and c == "\n":
            return c
        return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
    text = _CONTROL.sub(escape, text)
    return text + (f"... ({cut:,} more characters)" if cut > 0 else "")
