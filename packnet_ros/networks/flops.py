"""Operation counts of convolutional networks (for achieved-throughput figures)."""
from __future__ import annotations

import torch
from torch import nn


def conv_flops(net: nn.Module, *inputs) -> int:
    """FLOPs (2 x multiply-accumulates) of every Conv2d/Conv3d call in one forward pass.

    Counts what the module executes (a folded network counts its folded convolutions);
    normalisation, activations and resampling are not counted (a few % of PackNet).
    """
    from .fast import FoldedPackLayer
    total = [0]
    inside_folded: set[int] = set()
    for m in net.modules():
        if isinstance(m, FoldedPackLayer):
            inside_folded.update(id(c) for c in m.modules() if c is not m)

    def hook(module, args, output):
        w = module.weight
        per_output = w.shape[1] * w[0, 0].numel()  # in_channels/groups x kernel volume
        total[0] += 2 * output.numel() * per_output

    def folded_hook(module, args, output):
        total[0] += output.shape[0] * module.executed_flops(*output.shape[-2:])

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.Conv3d)) and id(m) not in inside_folded]
    handles += [m.register_forward_hook(folded_hook) for m in net.modules() if isinstance(m, FoldedPackLayer)]
    try:
        with torch.inference_mode():
            net(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total[0]
