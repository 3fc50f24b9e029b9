"""`trainledger formats test FILE` (what each line of a log becomes, for a user declaring a
format) and the `--formats FILE` option of `watch`, `ingest` and `formats test`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

formats_app = typer.Typer(no_args_is_help=True, add_completion=False,
                          help="Log formats: try one on a file, declared ones included.")

FORMATS_HELP = "a TOML file of \\[\\[formats]] tables: log formats declared without code (docs/parsers.md)"
"""(The brackets are escaped for rich's markup, which would eat them.)"""


def formats_option():
    return typer.Option(None, "--formats", help=FORMATS_HELP)


def use_formats_file(path: Optional[Path]) -> None:
    """Register the formats declared in `path` (None: none); a broken one is a one-line error, exit 2."""
    if path is None:
        return
    from monitor.parsers.declared import DeclaredFormatError, load_formats_file

    try:
        load_formats_file(str(path))
    except DeclaredFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@formats_app.command("test")
def test(
    file: Path = typer.Argument(..., help="a log file to read"),
    format: Optional[str] = typer.Option(None, "--format", help="read it as this format instead of sniffing it"),
    formats: Optional[Path] = formats_option(),
    limit: int = typer.Option(200, "--lines", help="how many lines to show (0: all)"),
) -> None:
    """Show what each line of FILE becomes: the record(s) it makes, nothing, or why it is bad."""
    import orjson

    from monitor.escape import printable
    from monitor.parsers import BadLine, by_name, sniff

    use_formats_file(formats)
    try:
        data = file.read_bytes()
    except OSError as exc:
        typer.echo(f"error: {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    lines = data.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    try:
        cls = by_name(format) if format else sniff(lines[:50])
    except ValueError as exc:
        typer.echo(f"error: --format: {exc}", err=True)
        raise typer.Exit(2) from None
    if cls is None:
        from monitor.unknown_format import advice

        typer.echo(advice(str(file), lines[:50]))
        raise typer.Exit(1)
    typer.echo(f"{file}: read as {cls.name}" + ("" if format else " (sniffed)"))
    parser = cls(run="test", attempt_prefix=file.name)
    shown = 0
    for number, line in enumerate(lines, 1):
        try:
            records = parser.feed(line.removesuffix("\r"))
            outcome = [orjson.dumps(r.to_event()).decode() for r in records] or ["-"]
        except BadLine as exc:
            outcome = [f"bad line: {exc}"]
        if limit and shown >= limit:
            break
        shown += 1
        typer.echo(f"{number}: {printable(line[:120])}")
        for text in outcome:
            typer.echo(f"    → {text}")
    for record in parser.flush():
        typer.echo(f"end of file → {orjson.dumps(record.to_event()).decode()}")


def ingest_event_files(engine, targets, formats: Optional[Path]) -> None:
    """`ingest`'s TensorBoard event files (monitor/tfevents.py), with the tag mapping of the
    `--formats` file's `[tfevents.tags]`; a broken file is a one-line error, exit 2."""
    from monitor.tfevents import TFEventsError, event_files, ingest_tfevents, read_tag_overrides

    paths = event_files(targets)
    if not paths:
        return
    try:
        ingest_tfevents(engine, paths, tags=read_tag_overrides(str(formats) if formats else None))
    except TFEventsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.add_typer(formats_app, name="formats")


def use_config_formats(config) -> None:
    """Register the `[[formats]]` tables of the configuration file in force (monitor/config.py)."""
    if not config.formats:
        return
    from monitor.parsers.declared import DeclaredFormatError, load_declared_formats

    try:
        load_declared_formats(config.formats, str(config.path))
    except DeclaredFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
