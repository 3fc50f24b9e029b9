"""The accounting policy the dashboard classifies with: the ledger's, from the same options.

`trainledger dashboard` takes the ledger's policy options (--timezone, --work-hours, …),
checks them, and hands them to the Streamlit process in $TRAINLEDGER_DASHBOARD_POLICY (JSON);
every page gets its Policy from `current_policy()` alone, so pointing the dashboard at
another source of the policy (a configuration file) is a change here only.
"""

from __future__ import annotations

import json
import os

from monitor.accounting import Policy
from monitor.policy_options import policy_from_options

ENV_VAR = "TRAINLEDGER_DASHBOARD_POLICY"
DEFAULT_OPTIONS = {"timezone": None, "work_hours": "09:30-22:00", "holidays": [], "maintenance": [],
                   "stall_after": None, "fault_after": None}


def policy_options_env(**options) -> str:
    """The environment value carrying these options (checked: ValueError names a bad one)."""
    merged = {**DEFAULT_OPTIONS, **options}
    policy_from_options(**merged)
    return json.dumps(merged)


def current_policy() -> Policy:
    """The Policy of $TRAINLEDGER_DASHBOARD_POLICY, else the ledger's defaults."""
    options = {**DEFAULT_OPTIONS, **json.loads(os.environ.get(ENV_VAR) or "{}")}
    return policy_from_options(**options)
