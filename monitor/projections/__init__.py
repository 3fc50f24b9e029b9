"""Projections: when a run will finish, what a change would do, and how two runs compare — pure
functions over a run's records and ledger, which the CLI, the report, the dashboard and the
exporter all call (see docs/projections.md).

    series = step_series(records); ledger = compute_ledger(records, policy)
    eta = estimate_eta(series, ledger, total_steps=None)          # finish P10 / P50 / P90
    rows = project(baseline_from_run(series, ledger), [Scenario("3M, 3 epochs", samples=3e6, epochs=3)])
"""
