"""Several processes training one model (``torchrun``): which process this is, its device, and keeping
every rank's networks equal (rank 0's weights to start, gradients averaged on every backward)."""

from __future__ import annotations

import os

import torch

from dfl.device import pick_device


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when not distributed."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def training_device(name: str, world: int, local_rank: int) -> torch.device:
    """The device this process trains on: ``--device`` alone, or, under torchrun, the process group joined
    and one GPU per local rank when CUDA is there."""
    if world <= 1:
        return pick_device(name)
    import torch.distributed as dist
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if torch.cuda.is_available() and name in ("auto", "cuda"):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return pick_device(name)


def share_networks(nets: list[torch.nn.Module], world: int) -> None:
    """Data parallelism without touching the objective's update code: every rank starts from rank 0's
    weights, and each gradient is averaged over the ranks as soon as backward has produced it."""
    _broadcast_from_rank0(nets)
    _sync_grads_on_backward([p for n in nets for p in n.parameters() if p.requires_grad], world)


def _broadcast_from_rank0(nets: list[torch.nn.Module]) -> None:
    """Every rank starts from rank 0's weights (a new model is initialised randomly per process)."""
    import torch.distributed as dist

    with torch.no_grad():
        for net in nets:
            for t in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(t.data, src=0)


def _sync_grads_on_backward(params: list[torch.nn.Parameter], world: int) -> None:
    """Average each gradient over the ranks as soon as backward has produced it."""
    import torch.distributed as dist

    def hook(p: torch.Tensor) -> None:
        dist.all_reduce(p.grad)
        p.grad.div_(world)

    for p in params:
        p.register_post_accumulate_grad_hook(hook)


def broadcast_choice(choice: str) -> str:
    """The first process's ``choice`` (e.g. the measured precision), the same in every process."""
    import torch.distributed as dist

    box = [choice]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def any_rank(flag: bool, device: torch.device) -> bool:
    """True in every process when ``flag`` is true in any: a Ctrl+C or SIGTERM that reached one rank stops all of
    them before the same iteration (a rank that went on alone would wait forever for the others' gradients)."""
    import torch.distributed as dist

    box = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item() > 0)
