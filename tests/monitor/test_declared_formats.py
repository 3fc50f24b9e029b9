"""Formats declared without code (monitor/parsers/declared.py): real logs of trainers that have
no parser read into records, field by field; the same records as a hand-written parser of the
same format; the shared endings for free; a broken declaration refused in one line naming the
key; the CLI (`formats test`, `ingest --formats`, `status` on an unknown file) as a process; and
formats shipped as Python packages (the `trainledger.parsers` entry-point group)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from datetime import timezone
from pathlib import Path

import pytest

from monitor.parsers import parse_lines, plugins, registry
from monitor.parsers.declared import DeclaredFormatError, load_declared_formats, load_formats_file
from monitor.parsers.torchtune import TorchtuneParser
from monitor.store import load_records, open_store
from parser_checks import parse_valid

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
FORMATS = LOGS / "declared" / "formats.toml"
TABLES = tomllib.loads(FORMATS.read_text())["formats"]
TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]
CLOCK = 1_700_000_000.0


def declared(name):
    """The declared format `name` from the fixture file, not registered (tests stay independent)."""
    return {cls.name: cls for cls in load_formats_file(str(FORMATS), register=False)}[name]


def read(parser_class, path, prefix="log"):
    parser = parser_class(run="run", attempt_prefix=prefix, clock=lambda: CLOCK, tz=timezone.utc)
    return parse_valid(parser, (LOGS / path).read_bytes().decode().split("\n"))


def cli(*args, cwd=None):
    return subprocess.run([TRAINLEDGER, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200"))


def test_a_regex_declaration_reads_a_minimind_console_field_by_field():
    records = read(declared("minimind"), "declared/minimind_pretrain_issue772.log")
    assert [(r.kind, r.step) for r in records] == [("step", 100), ("step", 200), ("step", 300)]
    assert records[0].fields == {"loss": 7.518, "lr": 0.0005, "epoch": 1.0, "total_steps": 39695.0,
                                 "logits_loss": 7.518, "aux_loss": 0.0, "epoch_time": 4767.0}
    assert records[2].fields["loss"] == 6.6907 and records[2].fields["lr"] == 0.00049998


def test_key_value_pairs_a_time_field_and_a_scaled_field():
    records = read(declared("xtuner"), "declared/xtuner_mmengine_issue658.log")
    assert [r.step for r in records] == [1510, 1520]
    assert records[0].ts == 1715085623.0  # 2024/05/07 12:40:23 UTC, from the declared time field
    assert records[1].fields == {"loss": 0.7605, "lr": 3.2813e-05, "grad_norm": 0.0005, "step_time": 2.901,
                                 "data_time": 0.0192, "peak_mem_bytes": 15266 * 2**20}


def test_a_declared_format_makes_the_records_the_hand_written_parser_makes():
    by_hand = [r for r in read(TorchtuneParser, "torchtune/codellama_pr1358.log") if r.kind == "step"]
    from_table = read(declared("torchtune_declared"), "torchtune/codellama_pr1358.log")
    assert from_table == by_hand and len(by_hand) == 5


def test_the_shared_endings_come_for_free():
    parser = declared("minimind")(run="run", attempt_prefix="log", clock=lambda: CLOCK, tz=timezone.utc)
    lines = (LOGS / "declared/minimind_pretrain_issue772.log").read_text().split("\n")
    lines += (LOGS / "faults/cuda_oom_traceback.log").read_text().split("\n")
    records, bad = parse_lines(parser, lines)
    assert bad == [] and [(r.kind, r.fields.get("cause")) for r in records][-1] == ("fault", "oom")
    assert records[-1].step == 300


@pytest.mark.parametrize("change, key", [
    ({"recognise": "(unclosed"}, "recognise"),
    ({"step_line": "no step group here"}, "(table)"),
    ({"fields": {"loss": "loss", "Bad Name": "x"}}, "fields"),
    ({"fields": {"loss": {"source": "loss", "scale": "big"}}}, "fields.loss.scale"),
    ({"name": "9lives"}, "name"),
    ({"name": "nanogpt"}, "name"),
    ({"colour": "blue"}, "colour"),
    ({"time": "stamp"}, "(table)"),
])
def test_a_broken_declaration_is_one_line_naming_the_key(change, key):
    table = {**TABLES[0], **change}
    with pytest.raises(DeclaredFormatError) as caught:
        load_declared_formats([TABLES[1], table], "mine.toml", register=False)
    message = str(caught.value)
    assert message.startswith("mine.toml: [[formats]] #2") and f": {key}: " in message and "\n" not in message


def test_formats_test_shows_what_each_line_becomes():
    result = cli("formats", "test", LOGS / "declared/minimind_pretrain_issue772.log", "--formats", FORMATS)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0].endswith("read as minimind (sniffed)")
    assert out[out.index("1: Model Params: 63.91M") + 1] == "    → -"
    step_100 = out[out.index(next(line for line in out if line.startswith("4: Epoch:[1/2](100/39695)"))) + 1]
    assert '"kind":"step"' in step_100 and '"step":100' in step_100 and '"loss":7.518' in step_100


def test_a_broken_formats_file_is_exit_2_with_one_line(tmp_path):
    broken = tmp_path / "formats.toml"
    broken.write_text("[[formats]]\nname = 'x'\nrecognise = '('\nstep_line = '(?P<step>\\d+)'\n")
    for args in (("formats", "test", broken), ("ingest", tmp_path, "--db", tmp_path / "s.db")):
        result = cli(*args, "--formats", broken)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "recognise" in result.stderr and "Traceback" not in result.stderr


def test_ingest_with_declared_formats_stores_their_records_and_status_helps_with_unknown_files(tmp_path):
    run = tmp_path / "minimind-run"
    run.mkdir()
    (run / "train.log").write_bytes((LOGS / "declared/minimind_pretrain_issue772.log").read_bytes())
    other = tmp_path / "xtuner-run"
    other.mkdir()
    (other / "train.log").write_bytes((LOGS / "declared/xtuner_mmengine_issue658.log").read_bytes())
    db = tmp_path / "s.db"
    just_one = tmp_path / "one.toml"
    just_one.write_text(FORMATS.read_text().split("[[formats]]\nname = \"xtuner\"")[0])
    result = cli("ingest", run, other, "--db", db, "--formats", just_one)
    assert result.returncode == 0, result.stderr
    engine = open_store(db)
    assert [(r.step, r.fields["loss"]) for r in load_records(engine, "minimind-run") if r.kind == "step"] == [
        (100, 7.518), (200, 7.0277), (300, 6.6907)]
    status = cli("status", "--db", db)
    assert status.returncode == 0, status.stderr
    assert f"{other / 'train.log'}: no known format. Its first lines:" in status.stdout
    assert "Iter(train) [1510/2046]  lr: 3.3994e-05" in status.stdout
    assert "Closest known format:" in status.stdout and "[[formats]]" in status.stdout


def test_a_parser_shipped_as_a_package_joins_the_registry(tmp_path, monkeypatch):
    package = tmp_path / "acme_parsers"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from monitor.parsers.text import TextParser\n\n"
        "class AcmeParser(TextParser):\n"
        "    name = 'acme'\n\n"
        "    @classmethod\n"
        "    def sniff(cls, head):\n"
        "        return 0.9 if any(line.startswith('ACME step') for line in head) else 0.0\n\n"
        "    def parse_line(self, line, rank):\n"
        "        if not line.startswith('ACME step '):\n"
        "            return None\n"
        "        step, loss = line.split()[2:4]\n"
        "        return self.step_record(int(step), self.at(), rank, loss=float(loss))\n")
    dist = tmp_path / "acme_parsers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-parsers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[trainledger.parsers]\nacme = acme_parsers:AcmeParser\n"
                                           "broken = acme_parsers:Missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.cache_clear()
    try:
        acme = [p for p in registry() if p.name == "acme"]
        assert len(acme) == 1  # the broken entry point is logged and left out
        from monitor.parsers import sniff

        assert sniff(["ACME step 1 2.5"]) is acme[0]
        [record] = parse_valid(acme[0](run="r", attempt_prefix="a", clock=lambda: CLOCK), ["ACME step 7 2.5"])
        assert (record.step, record.fields["loss"]) == (7, 2.5)
    finally:
        plugins.cache_clear()


def test_a_declared_launch_line_opens_the_attempt():
    table = {**TABLES[2], "name": "torchtune_launch", "launch": r"^Writing logs to "}
    [parser_class] = load_declared_formats([table], "inline", register=False)
    records = read(parser_class, "torchtune/codellama_pr1358.log")
    assert [r.kind for r in records][:2] == ["launch", "step"]
    assert records[0].fields["format"] == "torchtune_launch" and records[0].attempt == "log#1"


def test_a_mapped_figure_without_a_number_is_no_value_not_a_bad_line():
    [step] = read(declared("torchtune_declared"), "torchtune/gpu_resources_pr640.log")[:1]
    assert step.fields["loss"] == 1.7535516023635864 and step.fields["gpu_resources"] == 13708965376.0
    parser = declared("torchtune_declared")(run="run", attempt_prefix="log", clock=lambda: CLOCK, tz=timezone.utc)
    [sentinel] = parse_valid(parser, ["Step 3 | loss:nan lr:N/A tokens_per_second_per_gpu:12.5"])
    assert sentinel.fields == {"loss": None, "loss_nonfinite": True, "lr": None, "tgs": 12.5}
