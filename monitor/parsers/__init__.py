"""Log parsers, one module per format, and the choice of one for a file.

`sniff(head_lines)` picks the format of a file from its first lines; `by_name(name)` is the
override (`--format NAME`). Every parser follows the contract in `monitor/parsers/base.py`.
See docs/parsers.md for what each format maps to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache
from importlib import import_module
from importlib.metadata import entry_points

from monitor.parsers.base import BadLine, Parser
from monitor.records import Record

__all__ = ["BadLine", "Parser", "add_formats", "by_name", "parse_lines", "registry", "sniff"]

# module name → class name; order breaks ties in `sniff` (most specific first).
_PARSERS = (
    ("jsonl", "JsonlParser"),
    ("hf_trainer", "HFTrainerStateParser"),
    ("hf_trainer", "HFTrainerParser"),
    ("internlm", "InternLMParser"),
    ("megatron", "MegatronParser"),
    ("nanogpt", "NanoGPTParser"),
    ("nanochat", "NanochatParser"),
    ("torchtitan", "TorchtitanParser"),
    ("llamafactory", "LlamaFactoryParser"),
    ("swift", "SwiftParser"),
    ("modded_nanogpt", "ModdedNanoGPTParser"),
    ("deepspeed", "DeepSpeedParser"),
    ("mindformers", "MindFormersParser"),
    ("torchtune", "TorchtuneParser"),
    ("lightning", "LightningCSVParser"),
    ("lightning", "LightningParser"),
)

MIN_CONFIDENCE = 0.5
"""Below this, `sniff` answers None: the file is of no format we know."""


_DECLARED: dict[str, type[Parser]] = {}
"""Formats declared without code (monitor/parsers/declared.py), by name."""


def add_formats(classes: Iterable[type[Parser]]) -> None:
    """Make these parser classes (declared formats) known to `registry`, `by_name` and `sniff`."""
    _DECLARED.update((parser.name, parser) for parser in classes)


@lru_cache(maxsize=1)
def plugins() -> tuple[type[Parser], ...]:
    """Parsers shipped as Python packages: the `trainledger.parsers` entry-point group. One that
    fails to load, or is no Parser, is logged and left out (the other formats still work)."""
    found = []
    for entry in entry_points(group="trainledger.parsers"):
        try:
            parser = entry.load()
        except Exception as exc:  # noqa: BLE001 — a broken plugin must not stop the monitor
            logging.getLogger("trainledger.parsers").error("parser plugin %s = %s not loaded: %s: %s",
                                                           entry.name, entry.value, type(exc).__name__, exc)
            continue
        if not (isinstance(parser, type) and issubclass(parser, Parser) and isinstance(getattr(parser, "name", None), str)):
            logging.getLogger("trainledger.parsers").error("parser plugin %s = %s is not a Parser subclass with a name",
                                                           entry.name, entry.value)
            continue
        found.append(parser)
    return tuple(found)


def registry() -> list[type[Parser]]:
    """Every parser class, in sniffing order: declared formats, built-in ones, plugins."""
    builtin = [getattr(import_module(f"monitor.parsers.{module}"), cls) for module, cls in _PARSERS]
    return [*_DECLARED.values(), *builtin, *plugins()]


def by_name(name: str) -> type[Parser]:
    """The parser class called `name`; ValueError listing the known names otherwise."""
    known = registry()
    for parser in known:
        if parser.name == name:
            return parser
    raise ValueError(f"unknown log format {name!r}; known formats: {', '.join(p.name for p in known)}")


def sniff(head_lines: list[str]) -> type[Parser] | None:
    """The parser most confident about a file starting with these lines, or None."""
    best, best_confidence = None, 0.0
    for parser in registry():
        confidence = parser.sniff(head_lines)
        if confidence >= MIN_CONFIDENCE and confidence > best_confidence:
            best, best_confidence = parser, confidence
            if confidence >= 1.0:
                break  # none can be more confident (a folder of thousands of logs sniffs each)
    return best


def parse_lines(parser: Parser, lines: Iterable[str]) -> tuple[list[Record], list[tuple[int, str]]]:
    """Read every line, then drain (feed and flush, with the check every record passes): the
    records, and (line number, error) for each bad line."""
    records: list[Record] = []
    bad: list[tuple[int, str]] = []
    for lineno, line in enumerate(lines, 1):
        try:
            records += parser.read(line)
        except BadLine as exc:
            bad.append((lineno, str(exc)))
    return records + parser.drain(), bad
