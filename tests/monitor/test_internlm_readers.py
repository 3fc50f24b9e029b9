"""InternLM's two body readers agree: wherever the JSON fast path reads a metric body, the token
reader gives the same step and fields (or both call the line bad); and real lines take the
fast path (else it would be dead weight)."""

from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bench.bench_ingest import internlm_line
from monitor.parsers import BadLine
from monitor.parsers.internlm import _body_start
from monitor.parsers.internlm_fields import json_values, step_fields, token_values

LOGS = Path(__file__).parents[1] / "fixtures" / "logs" / "internlm"

KEYS = ["step", "loss", "tflops", "tgs", "lr", "loss_scale", "num_consumed_tokens", "largest_length", "micro_num",
        "acc/zh", "tokens/zh", "loss/zh", "tokens/en", "tgs/tgs_SMA", "tgs/tgs", "per_source", "x/y", "a:b", "", "{k"]
PLAIN = st.one_of(st.integers(-2**70, 2**70).map(str), st.floats(allow_nan=False).map(repr),
                  st.floats(allow_nan=False, allow_infinity=False).map(lambda x: f"{x:e}"), st.just("nan"))
ODD = st.sampled_from(["inf", "-inf", "-0", "007", "1_000", "1,234", "1.", ".5", "1e400", "true", "false", "null",
                       "'t'", "[1]", "{}", "-", "+1", "9" * 30, "1,'k':2", "1 '", "'"])
TEXT = st.text(alphabet="'\"{}[]:,= .-eE0123456789nafltru\\/_\t", max_size=12)
GROUPS = st.lists(st.tuples(st.sampled_from(["0_default", "1_fp32", "a b", "x:y", "q'"]),
                            st.one_of(PLAIN, PLAIN, ODD, TEXT)), max_size=3)
DICT = st.tuples(GROUPS, st.sampled_from([", ", ",", " ,  "]), st.sampled_from([": ", ":", " : "])).map(
    lambda t: "{" + t[1].join(f"'{k}'{t[2]}{v}" for k, v in t[0]) + "}")
GOOD = st.tuples(st.lists(st.sampled_from(KEYS), unique=True, max_size=10).flatmap(
    lambda keys: st.tuples(*(PLAIN.map(lambda value, key=key: f"{key}={value}") for key in keys))), st.lists(DICT, max_size=1)).map(
    lambda t: [*t[0], *(f"grad_norm={d}" for d in t[1])])
ODD_TOKEN = st.one_of(st.tuples(st.sampled_from(KEYS + ["grad_norm"]), st.one_of(ODD, TEXT, DICT)).map("=".join),
                      TEXT)
BODY = st.tuples(GOOD, st.lists(ODD_TOKEN, max_size=2), st.randoms(use_true_random=False),
                 st.sampled_from([" "] * 8 + ["  ", "\t ", ","])).map(
    lambda t: t[3].join(["step=1", *t[2].sample(t[0] + t[1], len(t[0]) + len(t[1]))]))


def outcome(read, body):
    try:
        return step_fields(read(body))
    except BadLine:
        return "bad line"


@settings(max_examples=3000, deadline=None)
@given(body=BODY)
@example(body="step=1 =\t0")  # each once read differently by the JSON reader
@example(body="step=1  :0")
@example(body="step=1 == ")
@example(body="step=1 grad_norm={} step=1,'k':2")
@example(body="step=1 loss=0 : step=0 tflops=0 tgs=nan grad_norm={}")
@example(body="step=1 grad_norm={'0_default': null}")
def test_where_json_reads_a_body_the_tokens_read_it_alike(body):
    if json_values(body) is not None:
        assert outcome(json_values, body) == outcome(token_values, body), body


def bodies(lines):
    for line in lines:
        if "step=" in line and "loss=" in line and (start := _body_start(line)) >= 0:
            yield line.rstrip()[start:].lstrip(" \t,").replace("tgs (tokens/gpu/second)=", "tgs=")


def test_real_lines_take_the_fast_path_and_agree():
    lines = [internlm_line(7)]
    for name in ("seed002_20b_demo.log", "internevo_issue375.log"):
        lines += (LOGS / name).read_text().splitlines()
    found = list(bodies(lines))
    assert len(found) == 8
    for body in found:
        assert json_values(body) is not None, body
        assert outcome(json_values, body) == outcome(token_values, body)
