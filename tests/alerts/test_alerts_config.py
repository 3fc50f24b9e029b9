"""trainledger.toml: found by --config, $TRAINLEDGER_CONFIG or the user's config folder; flags
override it; secrets from the environment; a bad value is one line naming the file and key,
exit 2, from every command that reads it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, time
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config
from monitor.notify import channel_of
from monitor.policy_options import load_policy

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "trainledger.example.toml"


def test_the_documented_example_is_valid_and_complete(monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK", "https://hooks.slack.example/T/B/x")
    config = load_config(EXAMPLE)
    assert config.policy.timezone and config.alerts.notifiers and config.alerts.routes
    assert {n.type for n in config.alerts.notifiers} == {"webhook", "slack", "feishu", "dingtalk", "wecom", "email"}
    assert any(route.when == "off_hours" for route in config.alerts.routes)
    assert config.formats == []  # the place for user-defined formats ([[formats]] tables)


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path, monkeypatch):
    path = tmp_path / "trainledger.toml"
    path.write_text('[policy]\ntimezone = "+08:00"\nwork_hours = "08:00-20:00"\nholidays = [2024-10-01]\n'
                    "stall_after_s = 300\n")
    monkeypatch.setenv("TRAINLEDGER_CONFIG", str(path))
    _config, policy = load_policy(None, None, None, [], [], None, None)
    assert (policy.timezone, policy.work_start, policy.stall_min_s) == ("+08:00", time(8), 300.0)
    assert policy.holidays == frozenset({date(2024, 10, 1)}) and policy.silence_fault_s == 1800.0
    _config, policy = load_policy(None, "UTC", "09:00-18:00", ["2024-10-02"], [], 60.0, None)
    assert (policy.timezone, policy.work_start, policy.stall_min_s) == ("UTC", time(9), 60.0)
    assert policy.holidays == frozenset({date(2024, 10, 2)})
    monkeypatch.delenv("TRAINLEDGER_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_config().path is None  # no file anywhere: all defaults
    (tmp_path / "xdg" / "trainledger").mkdir(parents=True)
    path.rename(tmp_path / "xdg" / "trainledger" / "trainledger.toml")
    assert load_config().policy.timezone == "+08:00"


def test_secrets_come_from_the_variables_the_file_names(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('[[alerts.notifiers]]\nname = "ops"\ntype = "dingtalk"\nurl_env = "TL_DT_URL"\n'
                    'secret_env = "TL_DT_SECRET"\n')
    (notifier,) = load_config(path).alerts.notifiers
    with pytest.raises(ConfigError, match=r"notifier 'ops': url_env: \$TL_DT_URL is not set"):
        channel_of(notifier)
    monkeypatch.setenv("TL_DT_URL", "https://oapi.dingtalk.example/robot/send?access_token=abc")
    monkeypatch.setenv("TL_DT_SECRET", "SECxyz")
    channel = channel_of(notifier)
    assert channel.mask("posting to https://oapi.dingtalk.example/robot/send?access_token=abc with SECxyz") \
        == "posting to *** with ***"


BAD = [("[alerts.rules]\nthroughput_margin = 2\n", "alerts.rules.throughput_margin"),
       ('[policy]\nwork_hours = "nine to five"\n', "policy.work_hours"),
       ('[policy]\ntimezone = "Mars/Olympus"\n', "timezone"),
       ('[[alerts.routes]]\nnotifiers = ["nobody"]\n', "alerts"),
       ("[policy]\nstall_after_s = -1\n", "policy.stall_after_s"),
       ("[policy\n", "line 1")]
CASES = [(*BAD[0], ["watch", "somewhere"]), (*BAD[5], ["watch", "somewhere"]), (*BAD[0], ["status"]),
         (*BAD[1], ["ledger", "run"]), (*BAD[4], ["alerts"])]
"""Each command once (a process each costs seconds); every bad value in process below."""


@pytest.mark.parametrize("text, key", BAD)
def test_every_bad_value_names_the_file_and_key(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_policy(str(path), None, None, [], [], None, None)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and key in message and "\n" not in message, message


@pytest.mark.parametrize("text, key, command", CASES)
def test_a_bad_value_is_one_line_naming_the_file_and_key_and_exit_2(tmp_path, text, key, command):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = subprocess.run([TRAINLEDGER, *command, "--config", str(path), "--db", str(tmp_path / "s.db")],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200"))
    assert result.returncode == 2, result
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and str(path) in line and key in line, line
    assert "Traceback" not in result.stderr
