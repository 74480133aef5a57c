"""Weight layout for small-batch forwards on a CPU.

Decoding multiplies a handful of rows (one token, a 16-node tree, a draft frontier of top-k
nodes) by every weight matrix. On CPU, ``F.linear`` with the usual row-major ``[out, in]``
weight runs those products up to 4x slower than with the same matrix stored column-major
(the transpose contiguous): 16 rows through SmolLM2's 1536 x 576 MLP weight take 0.76 ms
row-major and 0.19 ms column-major (benchmarks/weight_layout.py, RESULTS.md). One row and
hundreds of rows cost the same either way, so plain decoding and prefill are unaffected.
"""

from __future__ import annotations

import torch


def column_major_linears(module: torch.nn.Module) -> int:
    """Store every float32 ``nn.Linear`` weight in ``module`` column-major, in place: the same
    values and shapes, only the strides change. A weight shared with another module (a tied
    embedding) is replaced everywhere it is registered, so it stays shared. Returns how many
    matrices were re-laid."""
    replaced: dict[int, torch.nn.Parameter] = {}
    for linear in module.modules():
        weight = linear.weight if isinstance(linear, torch.nn.Linear) else None
        if weight is None or weight.dtype != torch.float32 or id(weight) in replaced or weight.stride(0) == 1:
            continue
        replaced[id(weight)] = torch.nn.Parameter(weight.detach().t().contiguous().t(), requires_grad=weight.requires_grad)
    for owner in module.modules():
        for name, parameter in list(owner.named_parameters(recurse=False)):
            if id(parameter) in replaced:
                setattr(owner, name, replaced[id(parameter)])
    return len(replaced)
