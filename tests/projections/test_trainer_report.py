"""The trainer writes its run report into its output folder at a finish (`train.report`), through
`trainledger report` in another process; a report that cannot be written never fails the run."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.projections.conftest import ROOT
from trainer.report import write_report


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_a_finished_run_leaves_its_report_in_its_output_folder(tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "trainer", "prepare", str(ROOT / "sample_data"), "--out", str(data)],
                   check=True, env=_env(), cwd=ROOT, capture_output=True)
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "trainer", "train", "--config", "tiny", f"data.path={data}",
                           f"train.out_dir={out}", "data.total_steps=12", "data.valid_every=6", "train.print_every=0",
                           "train.report=true"], env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"report: {out / 'report.md'}" in done.stdout
    run_id = (out / "run_id").read_text().strip()
    markdown = (out / "report.md").read_text()
    assert markdown.startswith(f"# Run report: {run_id}")
    assert "| steps | 12 |" in markdown and "| val_loss, first |" in markdown
    assert "<script" in (out / "report.html").read_text()  # plotly.js inlined
    assert sorted(p.name for p in out.iterdir()) == ["events.jsonl", "report.html", "report.md", "run_id"]


def test_a_report_that_cannot_be_written_is_one_line_not_a_failure(tmp_path, capsys):
    (tmp_path / "run_id").write_text("empty-run\n")
    assert write_report(tmp_path) is False  # no event log to read
    line = capsys.readouterr().out.strip()
    assert line.startswith("report: not written (error: ") and "\n" not in line
