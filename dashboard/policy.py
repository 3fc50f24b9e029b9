"""The accounting policy the dashboard classifies with: the ledger's, from the same
configuration file (trainledger.toml) and the same options over it.

`trainledger dashboard` takes the ledger's --config and policy options (--timezone,
--work-hours, …), checks them, and hands them to the Streamlit process in
$TRAINLEDGER_DASHBOARD_POLICY (JSON); every page gets its Policy from `current_policy()` alone.
"""

from __future__ import annotations

import json
import os

from monitor.accounting import Policy
from monitor.policy_options import load_policy

ENV_VAR = "TRAINLEDGER_DASHBOARD_POLICY"
DEFAULT_OPTIONS = {"config": None, "timezone": None, "work_hours": None, "holidays": [], "maintenance": [],
                   "stall_after": None, "fault_after": None}


def policy_options_env(**options) -> str:
    """The environment value carrying these options (checked: ValueError names a bad one)."""
    merged = {**DEFAULT_OPTIONS, **options}
    _policy(merged)
    return json.dumps(merged)


def _policy(options: dict) -> Policy:
    """The configuration file's policy with the options over it (ValueError names a bad one)."""
    options = dict(options)
    return load_policy(options.pop("config"), **options)[1]


def current_policy() -> Policy:
    """The Policy of $TRAINLEDGER_DASHBOARD_POLICY, else the ledger's defaults."""
    return _policy({**DEFAULT_OPTIONS, **json.loads(os.environ.get(ENV_VAR) or "{}")})
