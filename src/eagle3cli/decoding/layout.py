"""Weight layout for small-batch forwards on a CPU.

Decoding multiplies a handful of rows (one token, a 16-node tree, a draft frontier of top-k
nodes) by every weight matrix. On CPU, ``F.linear`` with the usual row-major ``[out, in]``
weight runs those products up to 4x slower than with the same matrix stored column-major
(the transpose contiguous): 16 rows through SmolLM2's 1536 x 576 MLP weight take 0.76 ms
row-major and 0.19 ms column-major (benchmarks/weight_layout.py, RESULTS.md). One row and
hundreds of rows cost the same either way, so plain decoding and prefill are unaffected.

Where torch has oneDNN (x86 builds), :func:`pack_linears` goes further: each weight is
reordered once into oneDNN's blocked layout and multiplied by its packed-product kernel,
which reads a large matrix over 4-16 rows for little more than over one (SmolLM2's 49152 x
576 head: 5.6 ms for 16 rows, 14 ms column-major). bfloat16 weights are packed too when the
caller says the CPU multiplies bf16 natively (AVX512-BF16, AMX; emulated bf16 is left to
``F.linear``). :func:`cpu_linears` packs when it can and re-lays column-major otherwise.

oneDNN lays a packed matrix out for the number of rows it is told to expect (:data:`PACK_ROWS`).
Laid out for one row, float32 products over 4 and 16 rows ran 1.3-2x slower than laid out for
4, and one row no faster (``benchmarks/pack_rows.py``, SmolLM2 after 128 tokens: decode(1)
25.6 → 22.1 ms, verify(16) 38.9 → 30.8 ms, plain decoding 43.2 → 51.3 tok/s, same tokens).
"""

from __future__ import annotations

import functools

import torch

PACK_ROWS = 4  # the rows oneDNN lays a packed matrix out for: tree verification and draft frontiers, not one


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


@functools.cache
def packing_available() -> bool:
    """Whether this torch has oneDNN's packed linear product (checked on a 2 x 2 product)."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), 1)
        product = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), packed, None, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return torch.equal(product, torch.full((1, 2), 2.0))


class PackedLinear(torch.nn.Module):
    """An inference-only ``nn.Linear`` whose weight is also held packed for oneDNN. ``weight``
    stays the original parameter (a tied embedding keeps sharing it), so the packed copy adds
    the matrix's size in memory — unless ``keep_weight`` is False (a matrix nothing else reads).
    ``rows``: the rows per product the packed layout is made for."""

    def __init__(self, linear: torch.nn.Linear, *, keep_weight: bool = True, rows: int = PACK_ROWS) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = (linear.weight if keep_weight else None), linear.bias
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def pack_linears(module: torch.nn.Module, *, bf16: bool = False, keep_weights: bool = True, rows: int = PACK_ROWS) -> int:
    """Replace every float32 CPU ``nn.Linear`` in ``module`` — and every bfloat16 one when
    ``bf16`` (the CPU multiplies bf16 natively) — by a :class:`PackedLinear` (when
    :func:`packing_available`); returns how many. ``keep_weights=False`` keeps only the packed
    copies (``module`` owns matrices nothing else reads, or whose owners keep them); ``rows`` as
    :class:`PackedLinear`'s."""
    if not packing_available():
        return 0
    dtypes = (torch.float32, torch.bfloat16) if bf16 else (torch.float32,)
    count = 0
    for owner in list(module.modules()):
        for name, child in list(owner.named_children()):
            if type(child) is torch.nn.Linear and child.weight.dtype in dtypes and child.weight.device.type == "cpu":
                setattr(owner, name, PackedLinear(child, keep_weight=keep_weights, rows=rows))
                count += 1
    return count


def cpu_linears(module: torch.nn.Module, *, bf16: bool = False, keep_weights: bool = True) -> None:
    """Lay out ``module``'s linear weights for CPU decoding: packed for oneDNN where torch has
    it (float32, and bfloat16 when ``bf16`` says it is native), else float32 ones column-major."""
    if not pack_linears(module, bf16=bf16, keep_weights=keep_weights):
        column_major_linears(module)
