"""Step-level checkpoints: async save, atomic publication, verified resume at any world size.

Model and optimizer tensors go through torch.distributed.checkpoint (DCP); the rest of the
training state goes into a weights_only-loadable `extra.pt` per rank. See docs/checkpoints.md.
"""

from trainer.checkpoint.resume import ResumeRequest, Resumed, RunComplete, resume
from trainer.checkpoint.saver import Checkpointer, SaveResult, release_group
from trainer.checkpoint.state import Checkpointable
from trainer.checkpoint.storage import CheckpointError

__all__ = ["Checkpointer", "CheckpointError", "ResumeRequest", "Resumed", "RunComplete", "SaveResult",
           "Checkpointable", "release_group", "resume"]
