"""Hand-made timelines for the accounting tests: a tiny builder of schema-v1 Records."""

from __future__ import annotations

from datetime import datetime, timezone

from monitor.records import Record

RUN = "toy"


def at(text: str) -> float:
    """'2024-06-03 08:00' (UTC) -> epoch seconds."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc).timestamp()


class Run:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.attempt = ""
        self.n = 0

    def _add(self, kind: str, ts: float, step: int | None = None, **fields) -> Run:
        self.records.append(Record(kind=kind, run=RUN, attempt=self.attempt, ts=ts, step=step, fields=fields))
        return self

    def launch(self, ts: float, *, resume_from: str | None = None, nodes: int = 1, batch: str = "0") -> Run:
        self.n += 1
        self.attempt = f"a{self.n}"
        return self._add("launch", ts, world_size=nodes, nodes=nodes, hosts=["h"], device="cpu", peak_flops=1.0,
                         flops_per_token=1.0, config_digest="x", data_batch=batch, data_slice=None,
                         resume_from=resume_from)

    def steps(self, t0: float, t1: float, every: float = 10.0, first_step: int = 1) -> Run:
        """Step records every `every` seconds from t0 to t1 inclusive."""
        n = int(round((t1 - t0) / every))
        for i in range(n + 1):
            self._add("step", t0 + i * every, step=first_step + i, loss=1.0)
        return self

    def resume(self, ts: float, step: int, **restored: bool) -> Run:
        parts = dict.fromkeys(("model", "optimizer", "lr_scheduler", "grad_scaler", "data_position", "rng"), True)
        parts.update(restored)
        return self._add("resume", ts, step=step, source="ckpt", mode="path", restored=parts)

    def fault(self, ts: float, cause: str = "exception") -> Run:
        return self._add("fault", ts, exc_type="RuntimeError", message="boom\nsecond line", cause=cause)

    def stop(self, ts: float) -> Run:
        return self._add("stop", ts, reason="SIGTERM")

    def finish(self, ts: float, step: int = 0) -> Run:
        return self._add("finish", ts, step=step, reason="total_steps")

    def checkpoint(self, ts: float, step: int, blocked_s: float) -> Run:
        return self._add("checkpoint", ts, step=step, path="p", bytes=1, blocked_s=blocked_s, write_s=blocked_s)

    def sorted(self) -> list[Record]:
        return sorted(self.records, key=lambda r: r.ts)


def spans(ledger_or_timeline, state: str) -> list[tuple[float, float]]:
    segments = getattr(ledger_or_timeline, "segments")
    return [(s.start, s.end) for s in segments if s.state == state]
