"""The run report, written into the output folder when a launch finishes (`train.report`).

The trainer does not import the monitor (docs/architecture.md): rank 0 runs `trainledger report`
as another process, which reads this folder's event logs into a temporary SQLite store and writes
`report.md` and `report.html` here. Best effort: a report that cannot be written is one line on
stdout, never a failed run.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from trainer.events import run_id_for

TIMEOUT_S = 600.0


def write_report(out_dir: Path, timeout_s: float = TIMEOUT_S) -> bool:
    """Write out_dir/report.md and report.html from out_dir's event logs; False when it could not."""
    logs = sorted(out_dir.glob("events*.jsonl"))
    with tempfile.TemporaryDirectory(prefix="trainledger-report-") as tmp:
        command = [sys.executable, "-c", "from trainledger.cli import main; main()", "report", run_id_for(out_dir),
                   "--db", str(Path(tmp) / "report.db"), "--out", str(out_dir)]
        for log in logs:
            command += ["--ingest", str(log)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"report: not written ({type(exc).__name__}: {exc})", flush=True)
            return False
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        print(f"report: not written ({reason})", flush=True)
        return False
    print(f"report: {out_dir / 'report.md'}, {out_dir / 'report.html'}", flush=True)
    return True
