"""FSDP for `train-planner fsdp=true`: the model's layers sharded across the processes with torch's FSDP2
(`fully_shard`), on CPU over gloo as on GPUs over NCCL.

Why torch's own and not accelerate's FSDP: accelerate sets FSDP up on GPUs only (on a CPU its processes each run
undistributed), while `fully_shard` shards on any device mesh, so the same code is tested here on 2 CPU processes
and runs on a GPU node. Each decoder, E-former and ViT encoder layer is one unit, the model the root; frozen and
trainable parameters share units (FSDP2 shards per parameter). A checkpoint holds full tensors: every process
takes part in gathering them, the first writes them through the model's usual `save_pretrained` path (into an
unsharded copy of the model it keeps for that), so an FSDP checkpoint loads into one process like any other. The
optimizer state is saved full too, keyed by parameter name, and loaded back only by an FSDP run.
"""
from __future__ import annotations

import torch
from torch import nn

UNITS = ("LlamaDecoderLayer", "EFormerLayer", "CLIPEncoderLayer")  # the layer classes each made one FSDP unit


def shard(model: nn.Module) -> nn.Module:
    """Shard `model` in place across the default process group (torch.distributed must be initialised)."""
    from torch.distributed.fsdp import fully_shard

    for module in list(model.modules()):
        if type(module).__name__ in UNITS:
            fully_shard(module)
    fully_shard(model)
    return model


def full_state(model: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(model state, optimizer state) as full CPU tensors on rank 0 (empty dicts elsewhere). Collective: every
    process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer(model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """A full optimizer state (as `full_state` saved it) into the sharded optimizer, on every process."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))
