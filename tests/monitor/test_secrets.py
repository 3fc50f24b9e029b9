"""A database password given as a URL query parameter (`?password=…`, which libpq takes as well
as `user:password@`) never appears in any output or log line: the ingest summary, the `status`
header, the watcher's log, or an error when the server cannot be reached.

The real commands as processes; the real PostgreSQL server where one is needed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from intake_helpers import write_steps
from monitor.store import count_records, mask_secrets, mask_url, open_store
from polling import wait_for

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2&s3cr%t"
"""With characters a URL must encode, so that neither the written nor the decoded form may leak."""


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), COLUMNS="400")


def _with_secret(url: str, key: str = "password") -> str:
    return make_url(url).update_query_dict({key: SECRET}).render_as_string(hide_password=False)


def _leaks(text: str) -> list[str]:
    forms = {SECRET, "hunter2", "s3cr%t", "s3cr%25t", "hunter2%26"}
    return [form for form in forms if form in text or form in text.replace("\n", "")]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINLEDGER, *args], capture_output=True, text=True, env=_env(), timeout=120)


@pytest.mark.parametrize("key", ["password", "sslpassword", "PASSWORD"])
def test_mask_url_and_mask_secrets_hide_a_query_password(key):
    url = _with_secret("postgresql+psycopg://bob@db.example:5432/ledger?sslmode=require", key)
    assert SECRET not in url and "hunter2" in url  # as written: percent-encoded
    masked = mask_url(url)
    assert not _leaks(masked) and f"{key}=***" in masked and "sslmode=require" in masked
    assert mask_secrets(f"connect to {url}: bad password {SECRET}", url).endswith("bad password ***")
    assert not _leaks(mask_secrets(f"connect to {url}: bad password {SECRET}", url))


def test_an_unreachable_server_names_the_store_without_its_password(tmp_path):
    url = _with_secret("postgresql+psycopg://postgres@127.0.0.1:1/postgres")
    for args in (["ingest", str(tmp_path)], ["status"], ["ledger", "some-run"]):
        done = _run(*args, "--db", url)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert "cannot open the store postgresql+psycopg://postgres@127.0.0.1:1/postgres?password=***" in done.stderr
        assert not _leaks(done.stdout + done.stderr), done.stderr
    watch = subprocess.run([TRAINLEDGER, "watch", str(tmp_path), "--db", url], capture_output=True, text=True,
                           env=_env(), timeout=120)
    assert watch.returncode == 1 and "password=***" in watch.stdout + watch.stderr
    assert not _leaks(watch.stdout + watch.stderr), watch.stderr


@pytest.mark.postgres
def test_ingest_status_and_watch_never_print_a_query_password(tmp_path, pg_url):
    url = _with_secret(pg_url)
    folder = tmp_path / "runs" / "run-a"
    folder.mkdir(parents=True)
    write_steps(folder / "events.jsonl", range(1, 21))
    (folder / "garbage.jsonl").write_text('{"v":1,"kind":"step"}\n' * 20)  # warnings on the log too

    ingest = _run("ingest", str(folder), "--db", url)
    assert ingest.returncode == 0, ingest.stderr
    assert "new records from 2 files into postgresql+psycopg://" in ingest.stdout and "password=***" in ingest.stdout
    status = _run("status", "--db", url)
    assert status.returncode == 0 and "password=***" in status.stdout, status.stderr
    for done in (ingest, status):
        assert not _leaks(done.stdout + done.stderr), done.stdout + done.stderr

    write_steps(folder / "events.jsonl", range(21, 41))
    proc = subprocess.Popen([TRAINLEDGER, "watch", str(folder), "--db", url, "--poll", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    try:
        engine = open_store(pg_url, read_only=True)
        wait_for(lambda: sum(count_records(engine).values()) >= 40, timeout=60)
        engine.dispose()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "watching " in out and "password=***" in out, out
    assert not _leaks(out), out
