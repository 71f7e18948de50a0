"""GPU placement under launchers (on a CPU machine: torch.cuda is stood in for).

torchrun shows every process all the node's GPUs (rank r takes GPU r); SLURM-style launchers
give each process its own CUDA_VISIBLE_DEVICES, so every rank sees one GPU, ordinal 0, and
``cuda:{LOCAL_RANK}`` was an invalid ordinal there.
"""

from __future__ import annotations

import pytest
import torch

from sslkit.engine import distributed
from sslkit.errors import ConfigError


@pytest.fixture
def gpus(monkeypatch):
    def visible(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return visible


@pytest.mark.parametrize("count,local_rank,ordinal", [(1, 3, 0), (4, 1, 1), (4, 5, 1), (8, 7, 7)])
def test_each_rank_takes_a_gpu_it_can_see(gpus, count, local_rank, ordinal):
    gpus(count)
    assert distributed.resolve_device("cuda", local_rank) == torch.device("cuda", ordinal)
    assert distributed.resolve_device("auto", local_rank) == torch.device("cuda", ordinal)


def test_one_visible_gpu_per_rank_joins_the_group_on_cuda_0(gpus, monkeypatch):
    gpus(1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    calls: list = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, timeout: calls.append(backend))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    for spec in ("cuda", "cuda:0"):  # cuda:0 is this rank's own GPU here, not one GPU for all
        calls.clear()
        place = distributed.setup(spec)
        assert place.device == torch.device("cuda", 0) and place.rank == 1 and place.world_size == 2
        assert calls == [("set_device", torch.device("cuda", 0)), "nccl"]


def test_one_gpu_for_all_ranks_is_still_refused_where_each_sees_all(gpus, monkeypatch):
    gpus(2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="LOCAL_RANK"):
        distributed.setup("cuda:0")
