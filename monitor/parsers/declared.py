"""Log formats declared without code: a `[[formats]]` table (in the monitor's configuration, or
a small TOML file passed with `--formats FILE`) says how to recognise a file and how to read its
step lines, and becomes a text parser like the hand-written ones (`monitor/parsers/text.py`:
cleaning, rank prefixes, timestamps, the file clock, attempts and every shared ending for free).

    [[formats]]
    name = "minimind"
    recognise = '^Epoch:\\[\\d+/\\d+\\]\\(\\d+/\\d+\\), loss: '   # a regex over the first lines
    step_line = '^Epoch:\\[(?P<epoch>\\d+)/\\d+\\]\\((?P<step>\\d+)/(?P<total_steps>\\d+)\\), (?P<rest>.*)'
    [formats.fields]                       # record field = the group or key holding it
    loss = "loss"
    lr = "lr"
    step_time = { source = "time_ms", scale = 0.001 }

A step line is read either by `step_line`, a regular expression with named groups, or by
`key_value` (`{ separator = ":", pairs = "," , line = "regex a step line matches" }`), which
splits the line into `key: value` pairs. A `step_line` group named `rest` is read as key/value
pairs too (with `key_value`'s separators when it is given, else `:` and `,`). `step` names the field holding the step
(`12` or `12/500`); `time` and `time_format` (strptime, or `unix`, `unix_ms`) the field holding
the line's time, else the line's own stamp or the file clock (advanced by `step_time` when it is
mapped). Figures the table does not map keep their own (snake_case) name when `keep_unmapped`.
`throughput` says whether `tokens_per_s`-like figures mapped as `throughput` are per device
(`tgs`) or global (`tokens_per_s`).

A broken declaration is refused with one line naming the key (`DeclaredFormatError`).
"""

from __future__ import annotations

import re
import time as _time
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from monitor.parsers.base import BadLine
from monitor.parsers.fields import loss_field, to_count
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_NUMBER_RE = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b", re.IGNORECASE)
_LEADING_DIGITS_RE = re.compile(r"\s*(\d+)")
_RESERVED = frozenset(("self", "kind", "step", "ts", "rank", "host"))
_LOSSES = frozenset(("loss", "val_loss"))


class DeclaredFormatError(ValueError):
    """A declaration that cannot be used; its text is one line naming the file and the key."""


class FieldSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1)
    scale: float = 1.0


class KeyValueStyle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    separator: str = Field(":", min_length=1)
    pairs: str = Field(",", min_length=1)
    line: re.Pattern[str] | None = None
    """Which lines are step lines (default: those where the step key is followed by the separator)."""


class DeclaredFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z][\w.-]{0,63}$")
    recognise: re.Pattern[str]
    step_line: re.Pattern[str] | None = None
    key_value: KeyValueStyle | None = None
    step: str = "step"
    time: str | None = None
    time_format: str | None = None
    launch: re.Pattern[str] | None = None
    fields: dict[str, str | FieldSource] = {}
    keep_unmapped: bool = True
    throughput: Literal["per_device", "global"] = "global"

    @field_validator("fields")
    @classmethod
    def _names(cls, fields: dict[str, str | FieldSource]) -> dict[str, FieldSource]:
        out = {}
        for name, source in fields.items():
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name in _RESERVED:
                raise ValueError(f"{name!r} is not a record field name (lower_snake_case, not one of {sorted(_RESERVED)})")
            out[name] = FieldSource(source=source) if isinstance(source, str) else source
        return out

    @model_validator(mode="after")
    def _one_style(self) -> DeclaredFormat:
        if self.step_line is None and self.key_value is None:
            raise ValueError("give step_line (a regex with named groups) or key_value (key/value pairs)")
        if self.step_line is not None:
            groups = set(self.step_line.groupindex)
            if self.step not in groups:
                raise ValueError(f"step_line has no group named {self.step!r} (the `step` field)")
            if "rest" not in groups:
                missing = [f"{name} → {src.source}" for name, src in self.fields.items() if src.source not in groups]
                if missing:
                    raise ValueError(f"fields name groups step_line does not have: {', '.join(missing)}")
        if self.time is not None and self.time_format is None:
            raise ValueError("time is given without time_format (a strptime format, or unix / unix_ms)")
        return self


_DEFAULT_STYLE = KeyValueStyle()
"""How a `rest` group splits when the declaration gives no `key_value`."""


def _number(text: str) -> float | None:
    """The number a value starts with (`1752ms` → 1752, `[10.5]` → 10.5, `83,385` → 83385);
    nan/inf → None; BadLine when there is none."""
    try:
        value = float(text)
    except ValueError:
        match = _NUMBER_RE.search(text)
        if match is None:
            raise BadLine(f"no number in {text[:40]!r}") from None
        value = float(match.group(0).replace(",", ""))
    return value if value - value == 0.0 else None


def _snake(key: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", key.lower()).strip("_")


class DeclaredParser(TextParser):
    """A text parser built from a `DeclaredFormat` (see the module docstring)."""

    spec: ClassVar[DeclaredFormat]
    _mapped_cache: ClassVar[list[tuple[str, str, float]]]
    _used_cache: ClassVar[frozenset[str]]

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        return 0.99 if head_matches(head, cls.spec.recognise) else 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        spec = self.spec
        values = self._values(line)
        if values is None:
            if spec.launch is not None and spec.launch.search(line):
                return self.open_launch(rank)
            return None
        raw_step = values.get(spec.step)
        digits = _LEADING_DIGITS_RE.match(raw_step) if raw_step else None
        if digits is None:
            return None
        step = to_count(digits.group(1))
        fields = self._figures(values)
        ts = self._own_time(values.get(spec.time)) if spec.time else None
        if ts is None:
            ts = self.advance_steps(step, fields.get("step_time")) if "step_time" in fields else self.at()
        return self.step_fields(step, ts, fields, rank)

    def _values(self, line: str) -> dict[str, str] | None:
        spec = self.spec
        if spec.step_line is not None:
            match = spec.step_line.search(line)
            if match is None:
                return None
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            rest = groups.pop("rest", None)
            values = self._pairs(rest) if rest else {}
            values.update(groups)  # a named group wins over a pair of the same name
            return values
        style = spec.key_value
        if style.line is not None:
            if not style.line.search(line):
                return None
        elif f"{spec.step}{style.separator}" not in line.replace(f" {style.separator}", style.separator):
            return None
        values = self._pairs(line)
        return values if spec.step in values else None

    def _pairs(self, text: str) -> dict[str, str]:
        style = self.spec.key_value or _DEFAULT_STYLE
        values: dict[str, str] = {}
        for part in text.split(style.pairs):
            key, found, value = part.partition(style.separator)
            if found:
                values[key.strip().strip("{[]}|").strip()] = value.strip()
        return values

    def _figures(self, values: dict[str, str]) -> dict[str, Any]:
        spec = self.spec
        fields: dict[str, Any] = {}
        for name, source, scale in self._mapped():
            raw = values.get(source)
            if raw is None or not raw.strip():
                continue
            try:
                value = _number(raw)
            except BadLine:  # a sentinel such as `N/A`: no value, not a bad line
                fields[name] = None
                continue
            if value is None:
                fields.update(loss_field("nan", name) if name in _LOSSES else {name: None})
            else:
                fields[name] = value * scale if scale != 1.0 else value
        if spec.keep_unmapped:
            used = self._used()
            for key, raw in values.items():
                if key in used:
                    continue
                name = _snake(key)
                if not name or name in fields or name in _RESERVED:
                    continue
                try:
                    fields[name] = _number(raw)
                except BadLine:
                    continue
        return fields

    @classmethod
    def _mapped(cls) -> list[tuple[str, str, float]]:
        """(record field, source, scale) of the declared fields, worked out once per format."""
        if "_mapped_cache" not in cls.__dict__:
            spec = cls.spec
            throughput = "tgs" if spec.throughput == "per_device" else "tokens_per_s"
            cls._mapped_cache = [(throughput if name == "throughput" else name, source.source, source.scale)
                                 for name, source in spec.fields.items()]
        return cls._mapped_cache

    @classmethod
    def _used(cls) -> frozenset[str]:
        """The sources the declaration already reads (the step, the time, the mapped fields)."""
        if "_used_cache" not in cls.__dict__:
            spec = cls.spec
            cls._used_cache = frozenset({spec.step, spec.time, *(source for _, source, _ in cls._mapped())})
        return cls._used_cache

    def _own_time(self, raw: str | None) -> float | None:
        if raw is None:
            return None
        fmt = self.spec.time_format
        try:
            if fmt in ("unix", "unix_ms"):
                value = float(raw)
                return value / 1000 if fmt == "unix_ms" else value
            moment = datetime.strptime(raw.strip(), fmt)
        except (ValueError, OverflowError):
            raise BadLine(f"time {raw[:40]!r} does not match time_format {fmt!r}") from None
        if moment.tzinfo is None:
            if self.tz is not None:
                moment = moment.replace(tzinfo=self.tz)
            else:
                return _time.mktime(moment.timetuple()) + moment.microsecond / 1e6
        return moment.timestamp()


def _error(source: str, index: int, table: dict, exc: ValidationError) -> DeclaredFormatError:
    first = max(exc.errors(), key=lambda error: len(error["loc"]))  # a union's most specific member
    key = ".".join(str(part) for part in first["loc"] if not _union_tag(part)) or "(table)"
    name = table.get("name") if isinstance(table, dict) else None
    where = f"[[formats]] #{index}" + (f" ({name})" if isinstance(name, str) else "")
    message = first["msg"].removeprefix("Value error, ")
    return DeclaredFormatError(f"{source}: {where}: {key}: {message}")


def _union_tag(part: object) -> bool:
    """pydantic names the member of a union in an error's location (`str`, `FieldSource`)."""
    return isinstance(part, str) and (part in ("str", "float", "int", "bool") or part[:1].isupper() or "[" in part)


def load_declared_formats(tables: list[dict], source: str, *, register: bool = True) -> list[type[DeclaredParser]]:
    """Parser classes for the `[[formats]]` tables read from `source` (a file name, for errors),
    registered (unless `register` is false) so that `--format NAME`, sniffing and the store's
    saved format names find them. DeclaredFormatError (one line naming the file, the table and
    the key) on a broken one; then nothing is registered."""
    from monitor.parsers import add_formats, registry

    if not isinstance(tables, list):
        raise DeclaredFormatError(f"{source}: formats: expected [[formats]] tables")
    classes: list[type[DeclaredParser]] = []
    for index, table in enumerate(tables, 1):
        try:
            spec = DeclaredFormat.model_validate(table)
        except ValidationError as exc:
            raise _error(source, index, table, exc) from None
        builtin = {p.name for p in registry() if not issubclass(p, DeclaredParser)}
        if spec.name in builtin or spec.name in {c.name for c in classes}:
            raise DeclaredFormatError(f"{source}: [[formats]] #{index} ({spec.name}): name: "
                                      f"{spec.name!r} is already a format")
        classes.append(type(f"Declared_{spec.name}", (DeclaredParser,), {"name": spec.name, "spec": spec}))
    if register:
        add_formats(classes)
    return classes


def load_formats_file(path: str, *, register: bool = True) -> list[type[DeclaredParser]]:
    """The formats declared in a small TOML file of `[[formats]]` tables."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise DeclaredFormatError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeclaredFormatError(f"{path}: not TOML: {exc}") from None
    return load_declared_formats(document.get("formats", []), path, register=register)
