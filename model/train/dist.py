"""Processes and devices of a training run: one process, or one per GPU under DDP (``torchrun`` or ``-mgpu``).

``Dist`` says which process this is; the helpers below are the only places ranks talk to each other (a mean over
ranks, a barrier, rank 0's decision broadcast to all, every rank's word gathered), so that every rank takes the
same branch. A rank that fails where the others would wait for it must say so first (``on_every_rank``): then all
of them stop together, with the same message, instead of waiting in a collective until the timeout.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.distributed as torch_dist

from model.predict import resolve_device
from model.train.options import DIST_TIMEOUT_MIN
from util.io import DataError

if TYPE_CHECKING:
    from model.train.options import TrainOptions

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


# cuBLAS's deterministic workspace (NVIDIA's documented setting); read when cuBLAS starts, so set before any matmul.
CUBLAS_WORKSPACE = ":4096:8"


def set_exactness(deterministic: bool, on_cuda: bool) -> None:
    """``--deterministic``, the one place it is applied: cuDNN's autotuner off (it times kernels per shape and may pick
    another one after a resume), deterministic algorithms (an op that has none is named in a warning, not stopped),
    and cuBLAS's fixed workspace. Without it, the autotuner is on for GPUs: faster, but not bit-exact."""
    if on_cuda:
        torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        torch.backends.cudnn.deterministic = True
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        torch.use_deterministic_algorithms(True, warn_only=True)


def init_distributed(
    device: str | None,
    backend: str = "auto",
    deterministic: bool = False,
    timeout_min: float = DIST_TIMEOUT_MIN,
) -> Dist:
    """One process of a torchrun / -mgpu job (WORLD_SIZE > 1 in the environment), or a lone process.

    ``backend`` "auto" is NCCL on GPUs and gloo on CPU; gloo also runs on GPUs (slower), e.g. for two processes
    sharing one GPU, which NCCL refuses. Processes beyond the local GPU count share GPUs round-robin.
    ``deterministic``: ``set_exactness``. ``timeout_min``: how long a collective waits for a lost rank."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if resolved.type == "cuda" and world_size > 1:
        resolved = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    set_exactness(deterministic, resolved.type == "cuda")
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world_size > 1 and not torch_dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if resolved.type == "cuda" else "gloo"
        kwargs = {"device_id": resolved} if resolved.type == "cuda" and backend == "nccl" else {}
        torch_dist.init_process_group(backend, timeout=timedelta(minutes=timeout_min), **kwargs)
    return Dist(rank, world_size, local_rank, resolved)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(local_rank: int, args: TrainOptions, world_size: int, port: int) -> None:
    from util.cli import setup_logging

    os.environ.update(
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    setup_logging()
    from model.train.run import train

    train(args)


def launch(args: TrainOptions) -> dict | None:
    """The entry of ``train_e2e.py``: ``-mgpu`` outside torchrun spawns one process per local GPU."""
    under_torchrun = "WORLD_SIZE" in os.environ
    gpus = torch.cuda.device_count()
    if args.gpu_parallel and not under_torchrun and gpus > 1 and resolve_device(args.device).type == "cuda":
        log.info("-mgpu: training on %d local GPUs (DistributedDataParallel)", gpus)
        torch.multiprocessing.start_processes(
            _spawned, args=(args, gpus, _free_port()), nprocs=gpus, start_method="spawn"
        )
        return None
    if args.gpu_parallel and not under_torchrun:
        log.info("-mgpu: %d GPU(s) visible, training in one process", gpus)
    from model.train.run import train

    return train(args)


def mean_over_ranks(total: float, count: int, dist: Dist) -> float:
    if not dist.active:
        return total / count
    t = torch.tensor([total, float(count)], dtype=torch.float64, device=comm_device(dist))
    torch_dist.all_reduce(t)
    return float(t[0] / t[1])


def comm_device(dist: Dist) -> torch.device:
    return dist.device if torch_dist.get_backend() == "nccl" else torch.device("cpu")


def barrier(dist: Dist) -> None:
    if dist.active:
        torch_dist.barrier()


def from_rank_0(value, dist: Dist):
    """Rank 0's ``value`` on every rank (a picklable object), so that all ranks make the same decisions."""
    if not dist.active:
        return value
    box = [value]
    torch_dist.broadcast_object_list(box, src=0, device=comm_device(dist))
    return box[0]


def gather_all(value, dist: Dist) -> list:
    """Every rank's ``value`` (picklable), on every rank, in rank order."""
    if not dist.active:
        return [value]
    values = [None] * dist.world_size
    torch_dist.all_gather_object(values, value)
    return values


def on_every_rank(work: Callable[[], T], dist: Dist) -> T:
    """``work()`` (which must hold no collective) on every rank, then a word from each: where it failed on some
    rank (a DataError: a folder missing on one node, another FRAME_DIR), every rank raises the same DataError
    naming the ranks, so that none waits for one that has gone. Another exception is re-raised as it is on its
    rank (a bug keeps its traceback) and named on the others."""
    if not dist.active:
        return work()
    result, error, word = None, None, None
    try:
        result = work()
    except Exception as e:  # noqa: BLE001 - told to the other ranks, then raised again
        error, word = e, str(e) if isinstance(e, DataError) else f"{type(e).__name__}: {e}"
    words = gather_all(word, dist)
    failed: dict[str, list[int]] = {}
    for rank, text in enumerate(words):
        if text is not None:
            failed.setdefault(text, []).append(rank)
    if not failed:
        return result
    if error is not None and not isinstance(error, DataError):
        raise error
    raise DataError("; ".join(f"{_ranks(ranks, dist.world_size)}: {text}" for text, ranks in failed.items()))


def _ranks(ranks: list[int], world_size: int) -> str:
    if len(ranks) == world_size:
        return f"every rank of {world_size}"
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))} of {world_size}"


def lost_rank(error: BaseException, dist: Dist, timeout_min: float) -> DataError | None:
    """A collective that failed because another rank went away (its connection closed, or it said nothing for
    ``--dist_timeout``), as a message for this rank; None for any other error."""
    text = str(error)
    markers = (
        "Connection closed by peer",
        "Connection reset by peer",
        "Timed out",
        "timed out",
        "Broken pipe",
    )
    if not dist.active or not any(m in text for m in markers):
        return None
    first = text.strip().splitlines()[0][:200] if text.strip() else type(error).__name__
    return DataError(
        f"rank {dist.rank} of {dist.world_size}: another rank stopped answering ({first}); the first rank to "
        f"fail says why in its own log. A rank that is only slow needs a longer --dist_timeout (now "
        f"{timeout_min:g} min)"
    )
