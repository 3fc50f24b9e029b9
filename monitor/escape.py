"""Text from logs made safe to print: in a log line, a terminal or the store's bad-line example."""

from __future__ import annotations

EXAMPLE_CHARS = 200


def printable(text: str) -> str:
    """The text with control characters escaped (`\\x1b`, `\\n`, …)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def example(raw: bytes | str) -> str:
    """The start of a bad line, escaped, at most EXAMPLE_CHARS long."""
    text = raw[:EXAMPLE_CHARS * 4].decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    return printable(text[:EXAMPLE_CHARS])[:EXAMPLE_CHARS]
