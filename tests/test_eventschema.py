import pytest

import eventschema


def _launch(**over):
    record = {"v": 1, "kind": "launch", "run": "r", "attempt": "a1", "ts": 1.0, "host": "h", "rank": 0,
              "world_size": 2, "nodes": 1, "hosts": ["h"], "device": "cpu", "peak_flops": 1e12,
              "flops_per_token": 6e6, "config_digest": "abc", "data_batch": "0", "data_slice": None,
              "resume_from": None}
    record.update(over)
    return record


def test_valid_launch_has_no_errors():
    assert eventschema.errors(_launch()) == []


@pytest.mark.parametrize("field", ["run", "attempt", "ts", "world_size", "peak_flops"])
def test_missing_required_field_is_named(field):
    record = _launch()
    del record[field]
    assert any(field in e for e in eventschema.errors(record))


def test_validate_lines_names_the_bad_line():
    import json

    lines = [json.dumps(_launch()), "{not json"]
    with pytest.raises(ValueError, match=r"log\.jsonl:2: not JSON"):
        eventschema.validate_lines(lines, source="log.jsonl")


def test_resume_requires_every_restored_part():
    record = {"v": 1, "kind": "resume", "run": "r", "attempt": "a2", "ts": 2.0, "host": "h", "rank": 0,
              "step": 10, "source": "ckpt/10", "restored": {"model": True, "optimizer": False}}
    assert any("lr_scheduler" in e for e in eventschema.errors(record))
