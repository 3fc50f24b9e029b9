"""When the training loop checkpoints and resumes, and the events it records about it.

The loop calls `resume_run` once before its first step and `LoopCheckpoints.after_step` /
`LoopCheckpoints.at_end` as it goes; everything checkpoint-related stays here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.checkpoint.resume import ResumeRequest, Resumed, RunComplete, resume
from trainer.checkpoint.saver import Checkpointer
from trainer.checkpoint.state import Checkpointable


def checkpoint_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def request_from(ckpt_cfg: Any) -> ResumeRequest:
    """The config's checkpoint.resume / init_from / load_optimizer as a ResumeRequest."""
    if ckpt_cfg.init_from:
        return ResumeRequest("init_from", Path(ckpt_cfg.init_from), load_optimizer=False)
    if ckpt_cfg.resume == "auto":
        return ResumeRequest("auto", load_optimizer=ckpt_cfg.load_optimizer)
    if ckpt_cfg.resume:
        return ResumeRequest("path", Path(ckpt_cfg.resume), load_optimizer=ckpt_cfg.load_optimizer)
    return ResumeRequest("none")


def resume_run(cfg: Any, state: Checkpointable, global_batch: int) -> Resumed | None:
    """Restore `state` as the config asks; RunComplete when nothing is left to train."""
    resumed = resume(checkpoint_root(cfg.train.out_dir), request_from(cfg.checkpoint), state,
                     total_steps=cfg.data.total_steps, config_digest=state.config_digest)
    if resumed is not None and resumed.source is not None and resumed.restored["data_position"] \
            and state.sampler.remaining() < global_batch:
        raise RunComplete(state.step, Path(resumed.source))
    return resumed


class LoopCheckpoints:
    """Saves every `checkpoint_every` steps and once more when the loop ends (stop or finish)."""

    def __init__(self, cfg: Any, recorder: Any, is_lead: bool, config_digest: str):
        self.every, self.total_steps = cfg.checkpoint.checkpoint_every, cfg.data.total_steps
        self.recorder, self.is_lead = recorder, is_lead
        self.saver = Checkpointer(checkpoint_root(cfg.train.out_dir), keep_max=cfg.checkpoint.keep_checkpoint_max,
                                  config_digest=config_digest, async_save=cfg.checkpoint.async_save) \
            if self.every > 0 else None

    def after_step(self, state: Checkpointable) -> None:
        if self.saver is None:
            return
        if state.step % self.every == 0:
            self.saver.save(state, finished="total_steps" if state.step >= self.total_steps else None)
        self._record(self.saver.completed())

    def at_end(self, state: Checkpointable, end: str) -> None:
        """The final checkpoint (also on SIGINT/SIGTERM), published before the loop returns."""
        if self.saver is None:
            return
        if self.saver.last_saved_step != state.step:
            self.saver.save(state, finished=None if end == "stop" else end)
        self._record(self.saver.wait())

    def _record(self, results) -> None:
        if self.is_lead:
            for result in results:
                self.recorder.record("checkpoint", **result.event_fields())
