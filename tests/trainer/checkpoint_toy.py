"""A toy training job driving the real checkpoint code, for tests that need no trainer.

    python tests/trainer/checkpoint_toy.py train ROOT --steps N [--save-every K] [--resume auto|PATH]
        (also under torchrun; prints one JSON line per step on rank 0)
    python tests/trainer/checkpoint_toy.py verify ROOT… (also under torchrun; each rank prints its choice)
    python tests/trainer/checkpoint_toy.py crash ROOT --reps R --seed S [--world 2]
        (forks R save loops — one process, or two gloo ranks — SIGKILLs each at a seeded moment,
         resumes in one process after each; prints a JSON summary)

The toy has dropout (so the RNG state matters), AdamW, a LambdaLR schedule and the trainer's
own GlobalSampler, whose cursor picks each step's samples, split across ranks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from trainer.checkpoint import Checkpointer, ResumeRequest, release_group, resume  # noqa: E402
from trainer.data import GlobalSampler  # noqa: E402

GLOBAL_BATCH = 8
NUM_SAMPLES = 1 << 16
"""Sample i is a fixed random vector (seeded by i)."""
DIM = 64


def emit(record: dict) -> None:
    """One line in one write: torchrun runs ranks unbuffered into one shared pipe."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


@dataclass
class ToyState:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LambdaLR
    grad_scaler: torch.amp.GradScaler
    sampler: GlobalSampler
    step: int = 0
    consumed_tokens: int = 0


def build(world: int) -> tuple[ToyState, torch.nn.Module]:
    torch.manual_seed(0)
    core = torch.nn.Sequential(torch.nn.Linear(DIM, 4 * DIM), torch.nn.GELU(), torch.nn.Dropout(0.1),
                               torch.nn.Linear(4 * DIM, DIM))
    model = torch.nn.parallel.DistributedDataParallel(core) if world > 1 else core
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 / (1 + 0.1 * s))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return ToyState(model, optimizer, scheduler, scaler, GlobalSampler(NUM_SAMPLES, seed=0)), core


def train_step(state: ToyState, rank: int, world: int) -> tuple[float, list[int]]:
    ids = state.sampler.take(GLOBAL_BATCH, rank, world).tolist()
    x = torch.stack([torch.randn(DIM, generator=torch.Generator().manual_seed(i)) for i in ids])
    loss = ((state.model(x) - x.flip(-1)) ** 2).mean()
    state.optimizer.zero_grad()
    loss.backward()
    state.optimizer.step()
    state.lr_scheduler.step()
    state.step += 1
    state.consumed_tokens += GLOBAL_BATCH
    total = loss.detach().clone()
    if world > 1:
        dist.all_reduce(total)
        total /= world
    return total.item(), ids


def train(args) -> None:
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    torch.set_num_threads(1)
    state, _ = build(world)
    mode = "none" if not args.resume else "auto" if args.resume == "auto" else "path"
    request = ResumeRequest(mode, Path(args.resume) if mode == "path" else None, not args.no_load_optimizer)
    resumed = resume(args.root, request, state, total_steps=args.steps)
    if rank == 0 and resumed is not None:
        emit({"resume": resumed.event_fields()})
    saver = Checkpointer(args.root, keep_max=args.keep, async_save=not args.sync)
    while state.step < args.steps:
        loss, ids = train_step(state, rank, world)
        seen = _gather(ids, world)
        if rank == 0:
            emit({"step": state.step, "loss": loss, "samples": seen})
        if args.save_every and state.step % args.save_every == 0:
            saver.save(state, finished="total_steps" if state.step == args.steps else None)
        for done in saver.completed():
            if rank == 0:
                emit({"checkpoint": done.event_fields()})
    for done in saver.wait():
        if rank == 0:
            emit({"checkpoint": done.event_fields()})
    _shutdown()


def _shutdown() -> None:
    if dist.is_initialized():
        release_group()
        dist.destroy_process_group()


def _gather(ids: list[int], world: int) -> list[int]:
    if world == 1:
        return ids
    out: list = [None] * world
    dist.all_gather_object(out, ids)
    return [i for part in out for i in part]


def verify(args) -> None:
    """`--resume auto` on each root in turn; every rank prints what it chose."""
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    for root in args.roots:
        state, _ = build(world)
        resumed = resume(root, ResumeRequest("auto"), state, total_steps=10**6)
        emit({"rank": rank, "root": root, "step": resumed.step if resumed else 0,
                          "cursor": state.sampler.cursor, "skipped": resumed.skipped if resumed else []})
    _shutdown()


# --- crash safety -----------------------------------------------------------------------

def _kill_at_file_operation(root: Path, kill_at_event: int | None) -> None:
    """SIGKILL this process at its n-th file operation under `root` (an audit hook)."""
    if kill_at_event is None:
        return
    events = iter(range(kill_at_event, -1, -1))
    prefix = str(root)

    def hook(name: str, hook_args: tuple) -> None:
        if name in ("open", "os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree") \
                and hook_args and str(hook_args[0]).startswith(prefix) and next(events) == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)


def _save_loop(root: Path, progress_fd: int, kill_at_event: int | None) -> None:
    """Child: train and checkpoint every step; report each published step on the pipe."""
    torch.set_num_threads(1)
    _kill_at_file_operation(root, kill_at_event)
    state, _ = build(1)
    saver = Checkpointer(root, keep_max=2)
    while True:
        train_step(state, 0, 1)
        saver.save(state)
        for done in saver.wait():
            os.write(progress_fd, f"{done.step}\n".encode())


def _synthetic(state: ToyState, core: torch.nn.Module, step: int) -> None:
    """Every tensor of the state says which step it belongs to (and which tensor it is)."""
    with torch.no_grad():
        for i, p in enumerate(core.parameters()):
            p.fill_(step + i / 100)
            for j, tensor in enumerate(state.optimizer.state[p].values()):
                tensor.fill_(step + i / 100 + (j + 1) / 1000)
    state.step, state.consumed_tokens, state.sampler.cursor = step, step * GLOBAL_BATCH, step * GLOBAL_BATCH


def _is_synthetic(state: ToyState, core: torch.nn.Module, step: int) -> bool:
    expected, expected_core = build(1)
    train_step(expected, 0, 1)  # creates the optimizer state
    _synthetic(expected, expected_core, step)
    same = all(torch.equal(a, b) for a, b in zip(core.parameters(), expected_core.parameters()))
    return same and all(torch.equal(a, b) for p, q in zip(core.parameters(), expected_core.parameters())
                        for a, b in zip(state.optimizer.state[p].values(), expected.optimizer.state[q].values())) \
        and state.sampler.cursor == step * GLOBAL_BATCH == state.consumed_tokens


def _save_loop_ranks(root: Path, progress_fd: int, kill_at_event: int | None, rank: int, store: Path) -> None:
    """Child: rank `rank` of 2 (gloo) saving a synthetic state of step 1, 2, … until killed."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(str(store), 2), rank=rank, world_size=2)
    _kill_at_file_operation(root, kill_at_event)
    state, core = build(2)
    train_step(state, rank, 2)  # creates the optimizer state
    saver = Checkpointer(root, keep_max=2)
    step = 0
    while True:
        step += 1
        _synthetic(state, core, step)
        saver.save(state)
        for done in saver.wait():
            if rank == 0:
                os.write(progress_fd, f"{done.step}\n".encode())


def _expected_after(step: int) -> tuple[ToyState, torch.nn.Module]:
    state, core = build(1)
    for _ in range(step):
        train_step(state, 0, 1)
    return state, core


def _verify_child(root: Path, saved_by: int, result_fd: int) -> None:
    """Child, one process: `--resume auto`, then compare every restored tensor with the state
    of that step (a replay of the training, or the synthetic state the two ranks saved)."""
    torch.set_num_threads(1)
    state, core = build(1)
    resumed = resume(root, ResumeRequest("auto"), state, total_steps=10**6)
    rng_after_resume = torch.get_rng_state()
    report: dict = {"step": resumed.step if resumed else 0, "skipped": resumed.skipped if resumed else []}
    if resumed is not None and resumed.source is not None and saved_by == 2:
        report["identical"] = _is_synthetic(state, core, resumed.step)
    elif resumed is not None and resumed.source is not None:
        expected, expected_core = _expected_after(resumed.step)
        same = all(torch.equal(a, b) for a, b in zip(core.state_dict().values(), expected_core.state_dict().values()))
        opt, exp_opt = state.optimizer.state_dict()["state"], expected.optimizer.state_dict()["state"]
        same = same and all(torch.equal(opt[i][k], exp_opt[i][k]) for i in exp_opt for k in exp_opt[i])
        same = same and state.sampler.cursor == expected.sampler.cursor == resumed.step * GLOBAL_BATCH
        same = same and torch.equal(rng_after_resume, torch.get_rng_state())  # the replay's RNG, now
        report["identical"] = same
    os.write(result_fd, json.dumps(report).encode())
    os._exit(0)


def _fork(target, *args) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            target(*args, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    return pid, read_fd


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def crash(args) -> None:
    """Parent: forks two children per repetition, one killed while saving, one resuming.

    The parent warms up once (lazy imports) with one thread and no thread left running, so
    forking it is safe and each repetition costs a fraction of a second."""
    torch.set_num_threads(1)
    _warm_up(Path(args.root) / "warm-up")
    rng = random.Random(args.seed)
    reps = []
    for rep in range(args.reps):
        root = Path(args.root) / f"rep_{rep:02d}"
        timed = rep % 2 == 1  # odd reps: a kill at a random time; even: at a random file operation
        kill_at = None if timed else rng.randrange(1, 80)
        delay = rng.uniform(0.0, 0.25) if timed else None
        kill_rank = (rep // 2) % args.world  # whose file operation, with two ranks
        if args.world == 1:
            children = [_fork(lambda fd: _save_loop(root, fd, kill_at))]
        else:
            children = [_fork(lambda fd, r=r: _save_loop_ranks(root, fd, kill_at if r == kill_rank else None, r,
                                                               root.with_suffix(".store"))) for r in range(2)]
        pids = [pid for pid, _ in children]
        progress = os.fdopen(children[0][1], "r")
        for _, fd in children[1:]:
            os.close(fd)
        if timed:
            first = progress.readline()  # the first checkpoint is published: saving is under way
            time.sleep(delay)  # the random moment itself, not a wait for something
        else:
            first = ""
            _wait_exit(pids[kill_rank], timeout=60)
        for pid in pids:  # the rest of the job dies with it, as under torchrun
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        statuses = [os.waitpid(pid, 0)[1] for pid in pids]
        published = [int(s) for s in (first + progress.read()).split()]
        progress.close()
        pid, result = _fork(lambda fd: _verify_child(root, args.world, fd))
        os.waitpid(pid, 0)
        outcome = json.loads(_read_all(result) or "{}")
        reps.append({"rep": rep, "kill": f"t+{delay:.3f}s" if timed else f"rank {kill_rank} file-op #{kill_at}",
                     "killed": all(os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL  # (a peer may die of it)
                                   for s in (statuses if timed else statuses[kill_rank:kill_rank + 1])),
                     "last_reported": published[-1] if published else 0, **outcome})
    emit({"reps": reps})


def _wait_exit(pid: int, timeout: float) -> None:
    """Poll until the child has exited (it kills itself at its chosen file operation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return
        time.sleep(0.01)


def _warm_up(root: Path) -> None:
    state, _ = build(1)
    train_step(state, 0, 1)
    saver = Checkpointer(root)
    saver.save(state)
    saver.wait()
    resume(root, ResumeRequest("auto"), build(1)[0], total_steps=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("root")
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--save-every", type=int, default=0)
    t.add_argument("--keep", type=int, default=0)
    t.add_argument("--resume", default="")
    t.add_argument("--no-load-optimizer", action="store_true")
    t.add_argument("--sync", action="store_true")
    v = sub.add_parser("verify")
    v.add_argument("roots", nargs="+")
    c = sub.add_parser("crash")
    c.add_argument("root")
    c.add_argument("--reps", type=int, default=24)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--world", type=int, default=1, choices=(1, 2))
    args = parser.parse_args()
    {"train": train, "verify": verify, "crash": crash}[args.cmd](args)


if __name__ == "__main__":
    main()
