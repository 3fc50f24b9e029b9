"""Our own JSONL format, and the registry that chooses a parser per file."""

import time
from pathlib import Path

import orjson
import pytest

import eventschema
from monitor import parsers
from monitor.parsers import BadLine, by_name, parse_lines, registry, sniff
from monitor.parsers.jsonl import JsonlParser

FIXTURE = Path(__file__).parents[1] / "fixtures" / "logs" / "jsonl" / "events.jsonl"


def _parser():
    return JsonlParser(run="out/fallback", attempt_prefix="events.jsonl", host="fallback-host")


def test_every_fixture_line_becomes_the_same_record():
    lines = FIXTURE.read_text().splitlines()
    records, bad = parse_lines(_parser(), lines)
    assert bad == []
    assert [r.to_event() for r in records] == [orjson.loads(line) for line in lines]
    assert [r.kind for r in records] == ["launch", "step", "eval", "checkpoint", "stop",
                                         "launch", "resume", "step", "fault", "finish"]
    step = records[1]
    assert (step.run, step.attempt, step.host, step.rank, step.step) == (
        "gpt-small", "20261123T100000-a1", "node1", 0, 1)
    assert step.fields["loss"] == 10.91 and step.fields["per_source"]["web"]["tokens"] == 1024
    assert records[8].rank == 1 and records[8].fields["cause"] == "oom"
    for record in records:
        assert eventschema.errors(record.to_event()) == []


def test_our_trainers_real_output_parses_whole():
    lines = (FIXTURE.parent / "trainer_tiny_2ranks.jsonl").read_text().splitlines()
    records, bad = parse_lines(_parser(), lines)
    assert bad == [] and len(records) == len(lines)
    assert records[0].kind == "launch" and records[0].fields["world_size"] == 2
    step = next(r for r in records if r.kind == "step")
    assert step.step == 1 and step.fields["loss"] == orjson.loads(lines[1])["loss"]
    assert set(step.fields["per_source"]) == {"code", "recipes", "stories"}


@pytest.mark.parametrize("line, reason", [
    ('{"v":1,"kind":"step","run":"r","attempt":"a","ts":1.0,"host":"h","rank":0,"step":3,"lo', "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"v":2,"kind":"step","run":"r","attempt":"a","ts":1,"step":1,"loss":1}', "schema version"),
    ('{"v":1,"kind":"bogus","run":"r","attempt":"a","ts":1}', "unknown kind 'bogus'"),
    ('{"v":1,"kind":"step","run":"","attempt":"a","ts":1,"step":1,"loss":1}', "'run'"),
    ('{"v":1,"kind":"step","run":"r","attempt":"a","ts":"yesterday","step":1,"loss":1}', "'ts'"),
    ('{"v":1,"kind":"step","run":"r","attempt":"a","ts":1,"rank":-1,"step":1,"loss":1}', "rank"),
    ('{"v":1,"kind":"step","run":"r","attempt":"a","ts":1,"step":1}', "without loss"),
    ('{"v":1,"kind":"step","run":"r","attempt":"a","ts":1,"step":1.5,"loss":1}', "not a step number"),
    ('{"v":1,"kind":"step","run":"r","attempt":"a","ts":1,"step":-1,"loss":1}', "not a step number"),
    ('{"v":1,"kind":"step","run":"r","attempt":"a","ts":1,"step":1,"loss":"low"}', "loss that is not a number"),
    ('{"v":1,"kind":"step","run":"r","attempt":"a","ts":1,"step":1,"loss":true}', "loss that is not a number"),
    ('{"v":1,"kind":"step","run":"r","attempt":"a","ts":1,"step":1,"loss":1,"largest_length":2.5}', "not an integer"),
    ('{"v":1,"kind":"step","run":"r","attempt":"a","ts":1,"step":1,"loss":1,"num_consumed_tokens":18446744073709551615}',
     "not an integer"),
    ("Traceback (most recent call last):", "not JSON"),
])
def test_bad_lines_are_refused_with_a_reason(line, reason):
    with pytest.raises(BadLine, match=reason):
        _parser().feed(line)


def test_numbers_written_as_strings_are_numbers():
    (record,) = _parser().feed('{"v":1,"kind":"step","run":"r","attempt":"a","ts":1,"step":3,"loss":"2.5",'
                               '"mfu":"nan","num_consumed_tokens":"1024"}')
    assert record.fields == {"loss": 2.5, "mfu": None, "num_consumed_tokens": 1024}


def test_good_lines_around_a_bad_one_are_kept_and_host_defaults():
    good = '{"v":1,"kind":"step","run":"r","attempt":"a","ts":1700000005,"step":%d,"loss":2.5}'
    records, bad = parse_lines(_parser(), [good % 1, "\x00\xff garbage", "", good % 2])
    assert [r.step for r in records] == [1, 2]
    assert bad[0][0] == 2
    assert records[0].host == "fallback-host" and records[0].ts == 1700000005.0


def test_sniff_prefers_jsonl_for_our_records_and_refuses_plain_text():
    head = FIXTURE.read_text().splitlines()[:5]
    assert JsonlParser.sniff(head) == 1.0
    assert sniff(head) is JsonlParser
    assert sniff(["hello", "world"]) is None
    assert sniff([]) is None


def test_registry_names_are_unique_and_by_name_finds_each():
    names = [p.name for p in registry()]
    assert len(names) == len(set(names)) and "jsonl" in names
    for parser in registry():
        assert by_name(parser.name) is parser


def test_by_name_lists_the_known_names_for_an_unknown_one():
    with pytest.raises(ValueError, match="unknown log format 'nope'; known formats: .*jsonl"):
        by_name("nope")


def test_package_exports_the_contract():
    assert parsers.Parser.__name__ == "Parser" and issubclass(parsers.BadLine, ValueError)


@pytest.mark.parametrize(("ts", "reason"), [
    (1_700_000_000_000, "milliseconds?"), (-5, "before 2000-01-01"), (1e300, "ahead of this host's clock"),
    (946_684_799.0, "before 2000-01-01"),
])
def test_a_record_whose_time_cannot_be_true_is_a_bad_line(ts, reason):
    good = '{"v":1,"kind":"step","run":"r","attempt":"a","ts":%s,"step":%d,"loss":2.5}'
    records, bad = parse_lines(_parser(), [good % (1_700_000_000, 1), good % (ts, 2), good % (time.time() + 3600, 3)])
    assert [r.step for r in records] == [1, 3]  # an hour ahead: a node's clock may run ahead
    (lineno, error), = bad
    assert lineno == 2 and "impossible ts" in error and reason in error
