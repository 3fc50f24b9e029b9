"""Findings about a run's life, read off the accounting (never a second copy of its rules):
stalled and fault from the live ledger, restart storms and restore gaps from its attempts,
finished and data-batch-exhausted from the final attempt's end record."""

from __future__ import annotations

from datetime import datetime

from monitor.accounting import Ledger, Policy
from monitor.accounting.attempts import Attempt
from monitor.accounting.states import step_view
from monitor.detectors.finding import Finding


def _local(ts: float, policy: Policy) -> str:
    return datetime.fromtimestamp(ts, policy.tz).strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def stall_and_fault(ledger: Ledger, attempts: list[Attempt], policy: Policy, now: float) -> list[Finding]:
    """Stalled while no step came for longer than the contract's threshold (kept through a
    silent fault: the silence is the same one); fault once the ledger's final downtime is one,
    with its evidence. (A stalled gap the latest step has just closed is history, not now.)
    Outside working hours the ledger files that time as off_hours: the row's
    state, not the current segment's, says fault."""
    final = attempts[-1]
    out = []
    fault_row = ledger.rows[-1] if ledger.rows and ledger.rows[-1].state == "fault" \
        and ledger.rows[-1].attempt == final.index else None
    silent = fault_row is not None and final.end is None
    quiet_since = final.last_step_ts if final.last_step_ts is not None else final.start
    threshold = step_view(final, policy).threshold
    if ledger.current_state == "stalled" and now - quiet_since > threshold or silent:
        where = f"step {final.steps[-1]}" if final.steps else "launch"
        out.append(Finding("stalled", "warning", f"no step for {(now - quiet_since) / 60:.1f} min since {where} at "
                           f"{_local(quiet_since, policy)} (stall threshold {threshold:.0f} s)",
                           final.attempt_id, {"since": quiet_since, "step": final.steps[-1] if final.steps else None}))
    if fault_row is not None:
        out.append(Finding("fault", "critical", f"{fault_row.cause} at {_local(fault_row.start, policy)}",
                           final.attempt_id, {"since": fault_row.start}))
    return out


def restart_storm(attempts: list[Attempt], checkpoints: list[tuple[float, int]], count: int,
                  window_s: float) -> Finding | None:
    """`count` launches within `window_s` with no checkpoint saved past where the first of them
    resumed: relaunching is not moving the run on."""
    if len(attempts) < count:
        return None
    storm = attempts[-count:]
    if storm[-1].start - storm[0].start > window_s:
        return None
    resumed = max((a.resumed_from for a in storm if a.resumed_from is not None), default=None)
    if any(ts >= storm[0].start and (resumed is None or step > resumed) for ts, step in checkpoints):
        return None
    at = f"step {resumed}" if resumed is not None else "the start"
    return Finding("restart_storm", "critical",
                   f"{count} launches in {(storm[-1].start - storm[0].start) / 60:.1f} min, none past the "
                   f"checkpoint at {at} (attempts {storm[0].attempt_id} … {storm[-1].attempt_id})",
                   storm[-1].attempt_id, {"launches": count, "resumed_from": resumed})


def restore_gap(final: Attempt) -> Finding | None:
    missing = final.restore_gaps()
    if not missing:
        return None
    return Finding("restore_gap", "warning", f"attempt {final.attempt_id} resumed without {', '.join(missing)}",
                   final.attempt_id, {"missing": missing})


def ended(final: Attempt) -> Finding | None:
    """Information: the run finished, or its data batch ran out (someone must start the next)."""
    if final.end != "finished" or final.end_record is None:
        return None
    record = final.end_record
    if record.fields.get("reason") == "data_exhausted":
        batch = final.data_batch or "the data batch"
        return Finding("data_exhausted", "info", f"{batch} exhausted at step {record.step}: start the next batch",
                       final.attempt_id, {"step": record.step})
    return Finding("finished", "info", f"finished at step {record.step} ({record.fields.get('reason', 'done')})",
                   final.attempt_id, {"step": record.step})
