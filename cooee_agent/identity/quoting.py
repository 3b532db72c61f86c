"""How an error message quotes the input it refuses: in full when short, clipped when not.

Tokens, addresses and tuple fields come from the wire and the command line; a refusal that
echoed a megabyte of input would put that megabyte in the log, the terminal and every error
reply. The length is named instead, so the reader still learns what was wrong.
"""

from __future__ import annotations

MAX_QUOTED = 80


def quoted(value: str) -> str:
    """``repr(value)``, or its first ``MAX_QUOTED`` characters and the full length."""
    if len(value) <= MAX_QUOTED:
        return repr(value)
    return f"{value[:MAX_QUOTED]!r}... ({len(value)} characters)"
