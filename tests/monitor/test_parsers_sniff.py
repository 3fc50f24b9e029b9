"""Every real excerpt is recognised as its own format, by its first lines, and by nobody else."""

from pathlib import Path

import pytest

from monitor.parsers import MIN_CONFIDENCE, by_name, registry, sniff

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
EXPECTED = {
    "jsonl/events.jsonl": "jsonl",
    "jsonl/trainer_tiny_2ranks.jsonl": "jsonl",
    "internlm/seed002_20b_demo.log": "internlm",
    "internlm/internevo_issue375.log": "internlm",
    "internlm/internlm_issue22_comma_format.log": "internlm",
    "megatron/issue_epfLLM_11.log": "megatron",
    "megatron/issue_756_mixtral.log": "megatron",
    "megatron/mi300x_time_limit.log": "megatron",
    "megatron/validation_and_resume.log": "megatron",
    "megatron/ctrl_c_sigint.log": "megatron",
    "megatron/rocm_fork_slash_values.log": "megatron",
    "hf_trainer/videollama2_logged_dicts.log": "hf_trainer",
    "hf_trainer/transformers5_string_metrics.log": "hf_trainer",
    "hf_trainer/sagemaker_glue_2020.log": "hf_trainer",
    "hf_trainer/trainer_state.json": "hf_trainer_state",
    "hf_trainer/translation_progress_bar_dicts.log": "hf_trainer",
    "hf_trainer/transformers5_glued_bars.log": "hf_trainer",
    "nanogpt/shakespeare_char.log": "nanogpt",
    "nanogpt/gpt2_fp16_nan.log": "nanogpt",
    "nanogpt/torchrun_8gpu_no_mfu.log": "nanogpt",
    "nanochat/run1000_d32_8xh100.log": "nanochat",
    "nanochat/d4_500_steps.log": "nanochat",
    "nanochat/npu_sdpa.log": "nanochat",
    "torchtitan/llama3_8b_h200.log": "torchtitan",
    "torchtitan/moe_eight_ranks_unprefixed.log": "torchtitan",
    "torchtitan/colour_codes_crlf.log": "torchtitan",
    "torchtitan/wps_2024_two_ranks.log": "torchtitan",
    "torchtitan/observability_2026_mesh.log": "torchtitan",
    "modded_nanogpt/parameter_golf_issue839.log": "modded_nanogpt",
    "modded_nanogpt/val_lines_pr65.log": "modded_nanogpt",
    "torchtune/codellama_pr1358.log": "torchtune",
    "torchtune/gpu_resources_pr640.log": "torchtune",
    "mindformers/llama2_13b_msrun_worker0.log": "mindformers",
    "mindformers/print_output_info_2023.log": "mindformers",
    "deepspeed/bert_issue1825.log": "deepspeed",
    "deepspeed/chatglm_issue12.log": "deepspeed",
    "deepspeed/pipeline_steps_moe.log": "deepspeed",
    "llamafactory/trainer_log_issue774.jsonl": "llamafactory",
    "llamafactory/trainer_log_issue4350.jsonl": "llamafactory",
    "swift/dpo_issue4146.log": "swift",
    "lightning/progress_bar_issue3866.log": "lightning",
    "lightning/progress_bar_cr_issue4225.log": "lightning",
    "lightning/metrics_csv_layout.csv": "lightning_csv",
    "faults/nccl_watchdog_nemo_progress.log": "lightning",  # NeMo prints Lightning's bar
    "axolotl/issue592_bar_dicts.log": "hf_trainer",
    "axolotl/pr3148_eval_memory.log": "hf_trainer",
    "llamafactory/console_issue3529.log": "hf_trainer",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_excerpt_is_recognised_as_its_format_only(name):
    head = (LOGS / name).read_bytes().decode().split("\n")[:50]
    assert sniff(head) is by_name(EXPECTED[name])
    others = [p.name for p in registry() if p.name != EXPECTED[name] and p.sniff(head) >= MIN_CONFIDENCE]
    assert others == []


def test_every_format_has_a_real_excerpt():
    assert {p.name for p in registry()} == set(EXPECTED.values())


def test_logs_of_endings_alone_are_no_format():
    for path in sorted((LOGS / "faults").iterdir()):
        if f"faults/{path.name}" in EXPECTED:
            continue
        assert sniff(path.read_text().splitlines()) is None, path.name
