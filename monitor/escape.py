"""Text from logs made safe to print: in a log line, a terminal, a CSV, markdown or JSON document,
or the store's bad-line example."""

from __future__ import annotations

import json
import logging

EXAMPLE_CHARS = 200


def printable(text: str) -> str:
    """The text with control characters escaped (`\\x1b`, `\\n`, …)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def json_printable(document: str) -> str:
    """A JSON text with every control character left in it (DEL, the C1 controls such as CSI
    0x9b, which JSON does not require escaping) written as a `\\u` escape: still the same JSON."""
    if document.replace("\n", "").isprintable():
        return document
    return "".join(c if c.isprintable() or c == "\n" else json.dumps(c)[1:-1] for c in document)


def example(raw: bytes | str) -> str:
    """The start of a bad line, escaped, at most EXAMPLE_CHARS long."""
    text = raw[:EXAMPLE_CHARS * 4].decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    return printable(text[:EXAMPLE_CHARS])[:EXAMPLE_CHARS]


class PrintableLog(logging.Filter):
    """Escapes each log message whole (its arguments are file names, run names, reasons read
    from logs): a daemon's log line can neither clear a terminal nor forge a second line. A
    traceback keeps its lines, each escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = "\n".join(map(printable, record.exc_text.split("\n")))
        return True
