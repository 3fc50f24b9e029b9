"""Properties every parser keeps, on any input: nothing but BadLine ever escapes, every record is
JSON-serialisable, and a parser restored from its state mid-stream continues exactly as if it
had never been interrupted (the intake commits that state with the file offset)."""

import inspect
from datetime import timezone
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventschema import KINDS
from monitor.parsers import BadLine, registry, sniff
from monitor.parsers.declared import load_formats_file
from monitor.records import Record

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
DECLARED = load_formats_file(str(LOGS / "declared" / "formats.toml"), register=False)
PARSERS = registry() + DECLARED
REAL_LINES = sorted({line for path in sorted(LOGS.rglob("*")) if path.is_file() and path.name != "README.md"
                     for line in path.read_bytes().decode().split("\n")})
TRICKY = ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>', "KeyboardInterrupt",
          "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ", "=" * 40, "[rank3]:Traceback (most recent",
          "{'loss': ", "{'loss': 1e999, 'epoch': 'x'}", "{'eval_loss': nan}", "iter 5: loss x, time yms", "step: 1  loss: ",
          "}", "{", '{"v":1,"kind":"step"', "tokens per iteration will be: ,", "process rank 99999999999 is bound to host:h device: 1",
          "  seq_length ...................................... -1", "------------------------ arguments ------------------------",
          "step 00001/00000 (nan%) | loss: inf | dt: ms | tok/sec: , | mfu: %", "Building 1-D device mesh with [''], [0]",
          "Tokens / micro-batch / rank: 0 x 0 = 0", "Tokens / micro-batch: 0", "\x1b[31m\x1b[", "[E1399 99:99:99.9 x]",
          '{"current_steps": 1e999, "loss": "x"}', '{"current_steps": 3, "total_steps": 3, "loss": null}',
          "step:1/0 train_time:nanms step_avg:ms", "[Rank 0] step=1, skipped=x, lr=[]", "steps: 1 loss: nan iter time (s): x samples/sec: 1",
          "{ Epoch:[  0/  0], step:[    0/    0], loss: [nan], per_step_time: ms", "Step 1 | loss:nan lr:x",
          "Epoch 0:  50% 1/2 [00:01<00:01,  1.00it/s, loss=nan, v_num=0]", "epoch,step,loss", "0,x,1",
          "Epoch:[1/2](1/0), loss: ,", "{'loss': 1, 'global_step/max_steps': '1/x', 'memory(GiB)': 'x'}",
          "Signal 9 (SIGKILL) received by PID 1", "NCCL error in: x", "CUDA error: x"]


def lines_strategy():
    real = st.sampled_from(REAL_LINES)
    truncated = st.tuples(real, st.integers(0, 400)).map(lambda t: t[0][: t[1]])
    garbage = st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace")))
    return st.lists(st.one_of(real, real, truncated, garbage, st.sampled_from(TRICKY)), max_size=40)


def make(parser_class, attempt_prefix="file"):
    """A parser with a fixed clock and zone where it takes them (records must not depend on
    when the test runs)."""
    options = {"clock": lambda: 1_700_000_000.0, "tz": timezone.utc}
    accepted = inspect.signature(parser_class).parameters
    return parser_class(run="out/run", attempt_prefix=attempt_prefix, host="h",
                        **{k: v for k, v in options.items() if k in accepted})


def run(parser, lines):
    """(records, bad line numbers), asserting that only BadLine escapes."""
    records, bad = [], []
    for number, line in enumerate(lines):
        try:
            records += parser.feed(line)
        except BadLine:
            bad.append(number)
    return records, bad


# a file name with a date-time anchors the text parsers' file clock from the first line
PREFIXES = st.sampled_from(["file", "train_20240520_030000.log:7"])


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(parser_class=st.sampled_from(PARSERS), lines=lines_strategy(), prefix=PREFIXES)
def test_any_input_gives_records_or_badline_never_a_crash(parser_class, lines, prefix):
    parser = make(parser_class, prefix)
    records, _ = run(parser, lines)
    records += parser.flush()
    for record in records:
        assert isinstance(record, Record) and record.kind in KINDS
        orjson.dumps(record.to_event())  # what the store will write must serialise
    orjson.dumps(parser.get_state())


@SETTINGS
@given(parser_class=st.sampled_from(PARSERS), lines=lines_strategy(), cuts=st.lists(st.integers(0, 40), max_size=3),
       prefix=PREFIXES)
def test_restored_state_continues_exactly(parser_class, lines, cuts, prefix):
    whole = make(parser_class, prefix)
    expected, expected_bad = run(whole, lines)
    expected += whole.flush()

    parser, got, got_bad, start = make(parser_class, prefix), [], [], 0
    for cut in sorted({min(c, len(lines)) for c in cuts}) + [len(lines)]:
        records, bad = run(parser, lines[start:cut])
        got += records
        got_bad += [start + b for b in bad]
        start = cut
        state = orjson.loads(orjson.dumps(parser.get_state()))  # as committed to the store
        parser = make(parser_class, prefix)
        parser.set_state(state)
    got += parser.flush()
    assert got == expected and got_bad == expected_bad


@SETTINGS
@given(head=lines_strategy())
def test_sniff_never_fails(head):
    for parser_class in PARSERS:
        assert 0.0 <= parser_class.sniff(head) <= 1.0
    assert sniff(head) in (None, *registry())


def test_ten_megabyte_line_is_a_bad_line_for_every_parser():
    line = "x" * 10_000_000
    for parser_class in PARSERS:
        parser = make(parser_class)
        try:
            parser.feed(line)
        except BadLine:
            continue
        assert parser_class.name == "hf_trainer_state"  # collects a document; still bounded below


ABSURD = ["iter " + "9" * 5000 + ": loss 1.0, time 1.00ms", "step: " + "9" * 5000 + "  loss: 1.0  memory: 1.0GiB(1%)",
          " iteration " + "9" * 5000 + "/ 10 | lm loss: 1.0 |", "step " + "9" * 5000 + "/10 (1.0%) | loss: 1.0",
          "process rank " + "9" * 5000 + " is bound to host:h device: 1", "x step=" + "9" * 5000 + " loss=1",
          "Step " + "9" * 5000 + " | Validation bpb: 1.0", "tokens per iteration will be: " + "9" * 5000,
          "Building 2-D device mesh with ['dp', 'tp'], [" + "999999," * 50 + "]", "using world size: 99999999999",
          "x step=1 loss=1e300 num_consumed_tokens=1e300 tgs=1e308", "{'loss': 1e308, 'num_tokens': 1e300, 'step': 3}",
          "  Total train batch size (w. parallel, distributed & accumulation) = " + "9" * 40]


def test_absurd_numbers_are_bad_lines_or_nulls_never_a_crash():
    """Python refuses int('9' * 5000); a store refuses integers beyond 64 bits."""
    for parser_class in PARSERS:
        parser = make(parser_class)
        records, _ = run(parser, ABSURD)
        records += parser.flush()
        for record in records:
            assert record.step is None or record.step < 2**53
            for value in record.fields.values():
                assert not isinstance(value, int) or abs(value) < 2**63
            orjson.dumps(record.to_event())


def test_every_real_excerpt_resumes_exactly_from_every_line():
    """Exhaustive on the real logs: stop after any line, restore, go on — same records."""
    from monitor.parsers import sniff as choose

    for path in sorted(p for p in LOGS.rglob("*") if p.is_file() and p.name != "README.md"):
        lines = path.read_bytes().decode().split("\n")
        parser_class = choose(lines[:50]) or PARSERS[-1]
        whole = make(parser_class)
        expected, expected_bad = run(whole, lines)
        expected += whole.flush()
        for cut in range(len(lines) + 1):
            first = make(parser_class)
            records, bad = run(first, lines[:cut])
            second = make(parser_class)
            second.set_state(orjson.loads(orjson.dumps(first.get_state())))
            more, more_bad = run(second, lines[cut:])
            assert records + more + second.flush() == expected, (path.name, cut)
            assert bad + [cut + b for b in more_bad] == expected_bad, (path.name, cut)
