"""`trainledger prepare`: shards per source, batches × slices, validation split, sampling."""

import json
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainer_procs import PYTHON, REPO, env
from trainer.prepare import EOS, PrepareError, decode, prepare, read_documents, sample_documents


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "notes.txt").write_text("first note\n\nsecond note, longer than the first\n\n\nthird")
    (src / "web.jsonl").write_text("".join(json.dumps({"text": f"web page {i} " + "x" * (i * 7)}) + "\n"
                                           for i in range(40)))
    pq.write_table(pa.table({"text": [f"book {i} " + "y" * (i * 11) for i in range(20)]}), src / "books.parquet")
    return src


def test_reads_text_jsonl_and_parquet_tagged_by_source(corpus):
    docs = read_documents([corpus])
    by_source = {s: [d for d in docs if d.source == s] for s in ("notes", "web", "books")}
    assert [len(v) for v in by_source.values()] == [3, 40, 20]
    assert by_source["notes"][2].text == "third"


def test_shards_hold_every_document_once_with_eos(corpus, tmp_path):
    meta = prepare([corpus], tmp_path / "out", batches=2, slices=3, valid_ratio=0.1, seed=1)
    out = tmp_path / "out"
    texts = []
    for folder in [out / f"batch_{b}" / f"slice_{k}" for b in range(2) for k in range(3)] + [out / "valid"]:
        for source in meta["sources"]:
            if not (folder / f"{source}.bin").exists():
                continue
            tokens = np.memmap(folder / f"{source}.bin", dtype=np.uint16, mode="r")
            lengths = np.load(folder / f"{source}.len.npy")
            assert lengths.sum() == len(tokens) and (tokens[np.cumsum(lengths) - 1] == EOS).all()
            starts = np.cumsum(lengths) - lengths
            texts += [decode(tokens[s:s + n]) for s, n in zip(starts, lengths)]
    assert sorted(texts) == sorted(d.text for d in read_documents([corpus]))
    assert meta["documents"] == {"train": 57, "valid": 6}


def test_sampling_is_reproducible_and_recorded(corpus):
    docs = read_documents([corpus])
    a, record = sample_documents(docs, 21, seed=5, smart=False)
    b, _ = sample_documents(docs, 21, seed=5, smart=False)
    c, _ = sample_documents(docs, 21, seed=6, smart=False)
    assert [d.index for d in a] == [d.index for d in b] != [d.index for d in c]
    assert record["documents"] == [[d.source, d.index] for d in a] and record["drawn"] == 21


def test_smart_sample_keeps_the_source_and_length_mix(corpus):
    docs = read_documents([corpus])
    _, record = sample_documents(docs, 21, seed=5, smart=True)
    corpus_mix, sample_mix = record["corpus"], record["sample"]
    for source, count in corpus_mix["by_source"].items():  # proportional within one document
        assert abs(sample_mix["by_source"].get(source, 0) - count * 21 / len(docs)) <= 1
    for full, drawn in zip(corpus_mix["by_length_bucket"], sample_mix["by_length_bucket"]):
        assert abs(drawn - full * 21 / len(docs)) <= 3


def test_cli_sample_writes_sample_json(corpus, tmp_path):
    out = tmp_path / "sampled"
    proc = subprocess.run([PYTHON, "-m", "trainer", "prepare", str(corpus), "--out", str(out),
                           "--sample", "30", "--smart", "--seed", "3"], env=env(), cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "sample.json").read_text())
    assert record["method"] == "smart" and record["seed"] == 3 and len(record["documents"]) == 30
    meta = json.loads((out / "meta.json").read_text())
    assert meta["documents"]["train"] + meta["documents"]["valid"] == 30


def test_bad_jsonl_line_is_one_line_error_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    proc = subprocess.run([PYTHON, "-m", "trainer", "prepare", str(bad), "--out", str(tmp_path / "o")],
                          env=env(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {bad}:2: not a JSON object with a 'text' string"]


def test_refuses_to_overwrite_a_prepared_folder(corpus, tmp_path):
    prepare([corpus], tmp_path / "out")
    with pytest.raises(PrepareError, match="not empty"):
        prepare([corpus], tmp_path / "out")


@pytest.mark.parametrize("name, content, line, offset", [
    ("notes.txt", b"first note\n\nsecond \xff note\n", 3, 19),
    ("web.jsonl", b'{"text": "ok"}\n{"text": "caf\xc3"}\n', 2, 28),
])
def test_invalid_utf8_is_one_line_error_naming_file_line_and_byte_offset(tmp_path, name, content, line, offset):
    bad = tmp_path / name
    bad.write_bytes(content)
    proc = subprocess.run([PYTHON, "-m", "trainer", "prepare", str(bad), "--out", str(tmp_path / "o")],
                          env=env(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (error,) = proc.stderr.strip().splitlines()
    assert error.startswith(f"error: {bad}:{line}: invalid UTF-8 at byte offset {offset} "), error
    assert not (tmp_path / "o").exists()
