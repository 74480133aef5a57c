"""T = 0: speculative output equals the target's greedy output token for token."""

from __future__ import annotations

import copy

import pytest
import torch

from builders.models import FAMILIES, build_tiny_target
from builders.decoding import single_thread, OracleDraft, echo_target_and_draft, naive_greedy, prompt, random_draft
from eagle3cli.decoding import DecodingConfig, baseline_generate, speculative_generate
from eagle3cli.decoding.target import HFTarget

VOCAB = 96
TREE = dict(top_k=4, depth=4, total_token=16)
CHAIN = dict(top_k=1, depth=4)
DEFAULT = dict()  # total_token 60, depth 5, top_k 10


def _models(family: str, draft_kind: str):
    if draft_kind == "echo":
        model, draft = echo_target_and_draft(family, VOCAB)
    else:
        model = build_tiny_target(family, VOCAB)
        draft = random_draft(model, 48)
    return model, draft, HFTarget(model, draft.config.aux_layer_ids)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("draft_kind", ["random", "echo"])
@pytest.mark.parametrize("shape", [TREE, CHAIN, DEFAULT], ids=["tree", "chain", "default"])
def test_speculative_equals_baseline_greedy(family, draft_kind, shape):
    model, draft, target = _models(family, draft_kind)
    config = DecodingConfig(max_new_tokens=30, **shape)
    for seed, length in [(0, 5), (1, 17), (2, 1)]:
        input_ids = prompt(seed, length, VOCAB)
        expected = baseline_generate(target, input_ids, config).tokens
        result = speculative_generate(target, draft, input_ids, config)
        assert result.tokens.tolist() == expected.tolist()
        assert result.stats.num_new_tokens == 30
        assert result.stats.num_target_forwards == 1 + len(result.stats.accept_lengths)


def test_baseline_equals_full_recomputation():
    model = build_tiny_target("qwen3", VOCAB)
    target = HFTarget(model, (1, 2, 3))
    input_ids = prompt(3, 11, VOCAB)
    result = baseline_generate(target, input_ids, DecodingConfig(max_new_tokens=20))
    assert result.tokens.tolist() == naive_greedy(model, input_ids, 20).tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_stops_exactly_at_stop_tokens(family):
    """The output ends at the first stop token the target produces, even mid-path."""
    model, draft, target = _models(family, "echo")
    input_ids = prompt(4, 7, VOCAB)
    free = baseline_generate(target, input_ids, DecodingConfig(max_new_tokens=40)).tokens.tolist()
    for cut in (0, 3, 9, 20):
        stop = free[cut]
        config = DecodingConfig(max_new_tokens=40, stop_token_ids=(stop, VOCAB + 5), **TREE)
        result = speculative_generate(target, draft, input_ids, config)
        assert result.tokens.tolist() == free[: free.index(stop) + 1]
        assert result.tokens.tolist() == baseline_generate(target, input_ids, config).tokens.tolist()


@pytest.mark.parametrize("max_new_tokens", [1, 2, 7, 23])
def test_max_new_tokens_is_exact(max_new_tokens):
    model, draft, target = _models("llama", "echo")
    config = DecodingConfig(max_new_tokens=max_new_tokens, **TREE)
    result = speculative_generate(target, draft, prompt(5, 6, VOCAB), config)
    assert result.tokens.numel() == max_new_tokens
    assert result.state.tokens.numel() == 6 + max_new_tokens


def _oracle(family: str, input_ids: torch.Tensor, boost: float, length: int = 80):
    model = build_tiny_target(family, VOCAB)
    real = random_draft(model, VOCAB)
    real.set_vocab_map(torch.zeros(VOCAB, dtype=torch.long), torch.ones(VOCAB, dtype=torch.bool))
    sequence = torch.cat([input_ids, naive_greedy(model, input_ids, length)])
    return model, OracleDraft(real, sequence, boost), HFTarget(model, real.config.aux_layer_ids), sequence


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("depth", [0, 3, 5])
def test_perfect_chain_draft_accepts_depth_plus_two(family, depth):
    """A draft proposing exactly the target's greedy continuation: τ = depth + 2, as with
    EAGLE's and AngelSlim's --depth (the root's top-k, then depth expansions)."""
    input_ids = prompt(6, 8, VOCAB)
    _, draft, target, sequence = _oracle(family, input_ids, boost=100.0)
    config = DecodingConfig(top_k=1, depth=depth, max_new_tokens=1 + 6 * (depth + 2))
    result = speculative_generate(target, draft, input_ids, config)
    assert result.stats.accept_lengths == [depth + 2] * 6
    assert result.tokens.tolist() == sequence[8 : 8 + config.max_new_tokens].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_noisy_oracle_tree_walks_deep_paths(family):
    """The true continuation is often a lower-ranked sibling: accepted paths run through
    arbitrary tree nodes, and the output still equals greedy decoding."""
    input_ids = prompt(7, 8, VOCAB)
    model, draft, target, sequence = _oracle(family, input_ids, boost=2.5)
    config = DecodingConfig(top_k=4, depth=5, total_token=30, max_new_tokens=60)
    result = speculative_generate(target, draft, input_ids, config)
    assert result.tokens.tolist() == sequence[8:68].tolist()
    assert result.stats.mean_accept_length > 2.0


@pytest.mark.parametrize("layout", ["column-major", "onednn-packed"])
def test_cpu_weight_layouts_keep_outputs_and_tied_embeddings(layout: str):
    """decoding.layout: same logits, every float32 Linear re-laid (column-major) or packed for
    oneDNN, a tied head still shares the embedding, and speculative decoding on the re-laid
    models stays exact."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from builders.models import tiny_config_kwargs
    from eagle3cli.decoding.layout import PackedLinear, column_major_linears, pack_linears, packing_available

    if layout == "onednn-packed" and not packing_available():
        pytest.skip("this torch has no oneDNN packed linear product")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{**tiny_config_kwargs(VOCAB), "tie_word_embeddings": True})).eval()
    draft = random_draft(model, 48)
    input_ids = prompt(5, 16, VOCAB)[None]
    with torch.inference_mode():
        before = [model(input_ids[:, :length]).logits for length in (1, 4, 16)]
    linears = {id(module.weight) for module in model.modules() if isinstance(module, torch.nn.Linear)}
    relay = column_major_linears if layout == "column-major" else pack_linears
    assert relay(model) == len(linears) == 4 * 7 + 1  # q k v o gate up down per layer, the head
    assert relay(model) == 0  # already done
    assert relay(draft) > 0
    for module in (*model.modules(), *draft.modules()):
        if layout == "column-major" and isinstance(module, torch.nn.Linear):
            assert module.weight.stride() == (1, module.out_features)
        assert layout == "column-major" or type(module) is not torch.nn.Linear
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert layout == "column-major" or isinstance(model.lm_head, PackedLinear)
    with torch.inference_mode():
        after = [model(input_ids[:, :length]).logits for length in (1, 4, 16)]
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    target = HFTarget(model, draft.config.aux_layer_ids)
    config = DecodingConfig(max_new_tokens=30, **TREE)
    expected = baseline_generate(target, input_ids[0], config).tokens
    assert speculative_generate(target, draft, input_ids[0], config).tokens.tolist() == expected.tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_gqa_attention_keeps_logits_and_outputs_without_repeating_the_cache(family, monkeypatch):
    """decoding.target.use_gqa_sdpa: tree verification (a mask, 16 rows), a continued prefill
    and decode(1) give the same logits as transformers' sdpa, never repeating the grouped keys
    and values, and speculative decoding stays token-identical."""
    import transformers.integrations.sdpa_attention as sdpa

    from eagle3cli.decoding.generate import draft_step_tree, extend_context, tree_inputs
    from eagle3cli.decoding.target import use_gqa_sdpa

    model, draft, target = _models(family, "random")
    config = DecodingConfig(max_new_tokens=30, **TREE)
    input_ids = prompt(6, 21, VOCAB)

    def forwards():
        state, _ = extend_context(target, draft, input_ids[:13], config)
        state, _ = extend_context(target, draft, input_ids, config, state.clone())  # 8 new rows after 12 cached
        prefix = state.cached_length
        _, tree = draft_step_tree(draft, state, config)
        verify = target.forward(tree.tokens[None], *tree_inputs(tree, prefix), state.target_cache).logits
        target.crop(state.target_cache, prefix)
        decode = target.forward(state.tokens[-1:][None], torch.tensor([[prefix]]), None, state.target_cache).logits
        return verify, decode

    with torch.inference_mode():
        before = forwards()
        expected = baseline_generate(target, input_ids, config).tokens.tolist()
        assert use_gqa_sdpa(model) and model.config._attn_implementation == "eagle3_gqa_sdpa"
        monkeypatch.setattr(sdpa, "repeat_kv", lambda *args: pytest.fail("the grouped keys were repeated"))
        after = forwards()
        for a, b in zip(before, after):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert speculative_generate(target, draft, input_ids, config).tokens.tolist() == expected
        assert baseline_generate(target, input_ids, config).tokens.tolist() == expected
    model.set_attn_implementation("eager")
    assert not use_gqa_sdpa(model)  # another implementation is left alone


@pytest.mark.parametrize("native", [False, True], ids=["emulated-bf16", "native-bf16"])
def test_bf16_linears_are_packed_only_where_the_cpu_multiplies_bf16(native: bool):
    """A bfloat16 Linear is packed for oneDNN where bf16 is native (same product as
    ``F.linear`` to bf16 rounding) and left as it is where bf16 would be emulated; float32
    ones are packed either way."""
    from eagle3cli.decoding import layout
    from eagle3cli.target.loading import native_bf16

    if not layout.packing_available():
        pytest.skip("this torch has no oneDNN packed linear product")
    if native and not native_bf16(torch.device("cpu")):
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 / AMX)")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 96, bias=False).bfloat16(), torch.nn.Linear(96, 32)).eval()
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        expected = module[0](x)
    assert layout.pack_linears(module, bf16=native) == (2 if native else 1)
    assert isinstance(module[1], layout.PackedLinear)
    assert isinstance(module[0], layout.PackedLinear) is native
    with torch.inference_mode():
        torch.testing.assert_close(module[0](x), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["as loaded", "cpu"])
def test_fused_target_forward_gives_the_models_logits(family, dtype, layout):
    """decoding.fused_target.FusedTarget (q/k/v and gate/up stacked, eagle3's own layer loop):
    prefill, continued prefill, tree verification under the mask and decode(1) give the model's
    own logits and capture-layer inputs exactly, also with its projections packed for the CPU
    (the model's own matrices untouched), and speculative decoding through it equals plain."""
    from eagle3cli.decoding.fused_target import FusedTarget
    from eagle3cli.decoding.generate import draft_step_tree, extend_context, tree_inputs
    from eagle3cli.decoding.layout import PackedLinear, cpu_linears

    model, draft, target = _models(family, "random")
    model.to(dtype)
    draft.to(dtype)
    fused = FusedTarget(model, (3, 0, 2))  # capture order as given, not sorted
    if layout == "cpu":  # against the model packed as the bench packs it for transformers' forward
        cpu_linears(fused.fused, keep_weights=False)
        assert not any(isinstance(module, PackedLinear) for module in model.modules())
        model = copy.deepcopy(model)
        cpu_linears(model)
    target = HFTarget(model, (3, 0, 2))
    config = DecodingConfig(max_new_tokens=30, **TREE)
    input_ids = prompt(7, 21, VOCAB)

    def forwards(target):
        first = target.forward(input_ids[None, :13], torch.arange(13)[None], None, None)
        out = target.forward(input_ids[None, 13:], torch.arange(13, 21)[None], None, first.cache)  # 8 rows after 13 cached
        state, _ = extend_context(target, draft, input_ids, config)
        prefix = state.cached_length
        _, tree = draft_step_tree(draft, state, config)
        verify = target.forward(tree.tokens[None], *tree_inputs(tree, prefix), state.target_cache)
        target.crop(state.target_cache, prefix)
        decode = target.forward(state.tokens[-1:][None], torch.tensor([[prefix]]), None, state.target_cache, last_logits_only=True)
        return [first.logits, out.logits, out.aux_hidden, verify.logits, verify.aux_hidden, decode.logits, decode.aux_hidden]

    with torch.inference_mode():
        for expected, got in zip(forwards(target), forwards(fused)):
            assert got.dtype == expected.dtype and torch.equal(got, expected)
        config = DecodingConfig(max_new_tokens=30, **TREE)
        baseline = baseline_generate(target, input_ids, config).tokens.tolist()
        assert baseline_generate(fused, input_ids, config).tokens.tolist() == baseline
        assert speculative_generate(fused, draft, input_ids, config).tokens.tolist() == baseline


@pytest.mark.parametrize("family", FAMILIES)
def test_the_fused_target_runs_the_lm_head_only_for_tree_nodes_with_children(family):
    """On a CPU (``partial_logits``) a tree verification computes the logits of the nodes with
    children — exactly those rows of every node's logits — and ``head`` a leaf's when the path ends
    there; greedy speculative decoding so gives the tokens and accept lengths of verifying every row."""
    from eagle3cli.decoding.fused_target import FusedTarget
    from eagle3cli.decoding.generate import draft_step_tree, extend_context, tree_inputs
    from eagle3cli.decoding.layout import cpu_linears

    model, draft, _ = _models(family, "echo")  # deep acceptance: paths end at leaves too
    fused = FusedTarget(model, draft.config.aux_layer_ids)
    cpu_linears(fused.fused, keep_weights=False)
    assert fused.partial_logits
    config = DecodingConfig(max_new_tokens=40, **TREE)
    input_ids = prompt(1, 11, VOCAB)  # paths end at inner nodes and at leaves, in every family
    with torch.inference_mode():
        state, _ = extend_context(fused, draft, input_ids, config)
        _, tree = draft_step_tree(draft, state, config)
        inputs = (tree.tokens[None], *tree_inputs(tree, state.cached_length))
        every = fused.forward(*inputs, state.target_cache)
        fused.crop(state.target_cache, state.cached_length)
        inner = tree.inner_nodes()
        leaves = torch.tensor([node for node in range(tree.num_nodes) if node not in inner.tolist()])
        assert 0 < inner.numel() < tree.num_nodes
        part = fused.forward(*inputs, state.target_cache, logit_rows=inner)
        assert torch.equal(part.logits, every.logits[:, inner]) and torch.equal(part.aux_hidden, every.aux_hidden)
        assert torch.equal(part.head(leaves), every.logits[0, leaves])

        head_rows: list[int] = []  # rows per LM head product of the speculative steps
        head = fused.fused.head.forward
        fused.fused.head.forward = lambda x: head_rows.append(x.shape[0]) or head(x)
        partial = speculative_generate(fused, draft, input_ids, config)
        fused.fused.head.forward = head
        fused.partial_logits = False
        whole = speculative_generate(fused, draft, input_ids, config)
    assert partial.tokens.tolist() == whole.tokens.tolist() == baseline_generate(fused, input_ids, config).tokens.tolist()
    assert partial.stats.accept_lengths == whole.stats.accept_lengths
    head_rows = head_rows[1:]  # after the prompt's last row: per step the inner nodes, then a leaf's row where the path ends at one
    assert len(head_rows) > len(partial.stats.accept_lengths) and head_rows.count(1) == len(head_rows) - len(partial.stats.accept_lengths)
    assert max(head_rows) < TREE["total_token"]


def test_fused_target_refuses_what_it_cannot_run():
    """Another architecture, or a Llama-family model missing a piece, gets the reason, not a wrong forward."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from eagle3cli.decoding.fused_target import FusedTarget, unfused_reason
    from eagle3cli.errors import Eagle3Error

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=VOCAB))
    assert unfused_reason(gpt2) == "model_type 'gpt2' is not one of llama, mistral, qwen2, qwen3, hunyuan_v1_dense"
    qwen3 = build_tiny_target("qwen3", VOCAB)
    assert unfused_reason(qwen3) is None
    del qwen3.model.layers[2].self_attn.k_norm
    assert unfused_reason(qwen3) == "a decoder layer lacks the q/k norms q_norm/k_norm"
    llama = build_tiny_target("llama", VOCAB)
    llama.model.layers[1].mlp.up_proj = torch.nn.Identity()
    assert unfused_reason(llama) == "a decoder layer lacks one of mlp.gate_proj/up_proj/down_proj as nn.Linear"
    with pytest.raises(Eagle3Error, match="fused target forward cannot run this model: a decoder layer lacks one of mlp"):
        FusedTarget(llama, (1, 2, 3))


@pytest.mark.parametrize("model_type", ["qwen2", "mistral"])
def test_fused_target_runs_the_other_llama_family_types(model_type):
    """qwen2 (biased q/k/v) and mistral (no sliding window) through the fused forward: the model's
    logits and capture states for a prefill, a tree-masked verification and decode(1)."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from builders.models import tiny_config_kwargs
    from eagle3cli.decoding.fused_target import FusedTarget

    torch.manual_seed(0)
    if model_type == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**tiny_config_kwargs(VOCAB))).eval()
        assert model.model.layers[0].self_attn.k_proj.bias is not None
    else:
        model = MistralForCausalLM(MistralConfig(**tiny_config_kwargs(VOCAB), sliding_window=None)).eval()
    targets = [HFTarget(model, (1, 2, 3)), FusedTarget(model, (1, 2, 3))]
    input_ids = prompt(8, 12, VOCAB)[None]
    mask = torch.ones(1, 1, 3, 15, dtype=torch.bool)
    mask[0, 0, 0, 13:] = mask[0, 0, 1, 14] = mask[0, 0, 2, 13] = False  # node 12 and its two children, siblings apart
    outputs = []
    with torch.inference_mode():
        for target in targets:
            first = target.forward(input_ids, torch.arange(12)[None], None, None)
            verify = target.forward(torch.tensor([[5, 6, 7]]), torch.tensor([[12, 13, 13]]), mask, first.cache)
            target.crop(verify.cache, 12)
            decode = target.forward(torch.tensor([[5]]), torch.tensor([[12]]), None, verify.cache)
            outputs.append([first.logits, first.aux_hidden, verify.logits, verify.aux_hidden, decode.logits])
    for expected, got in zip(*outputs):
        assert torch.equal(got, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["as loaded", "cpu"])
def test_fused_draft_layer_gives_the_layers_outputs(dtype, layout):
    """decoding.fused_draft: the draft layer with q/k/v and gate/up stacked gives the layer's own
    outputs bit for bit — a prompt fed through the cache, a tree-masked frontier, one row — also
    with both packed for the CPU, and drafting through it builds the same trees."""
    from eagle3cli.decoding.fused_draft import FusedDraftLayer, fuse_draft_layer
    from eagle3cli.decoding.generate import draft_step_tree, extend_context
    from eagle3cli.decoding.layout import cpu_linears
    from eagle3cli.decoding.state import allocate_draft_cache, draft_forward

    model, draft, target = _models("llama", "random")
    draft.to(dtype)
    fused = copy.deepcopy(draft)
    fuse_draft_layer(fused)
    assert isinstance(fused.midlayer, FusedDraftLayer)
    if layout == "cpu":
        cpu_linears(draft)
        cpu_linears(fused)
    hidden_size = draft.config.hidden_size
    generator = torch.Generator().manual_seed(1)
    tokens = prompt(3, 12, VOCAB)[None]
    hidden = torch.randn(1, 12, hidden_size, generator=generator).to(dtype)
    frontier = torch.randn(1, 3, hidden_size, generator=generator).to(dtype)
    mask = torch.ones(1, 1, 3, 12 + 3, dtype=torch.bool)
    mask[0, 0, 1, 12] = mask[0, 0, 2, 13] = False

    def passes(model):
        cache = allocate_draft_cache(model, 32)
        fed = draft_forward(model, cache, tokens[:, :9], hidden[:, :9], torch.arange(9)[None])  # causal, empty cache
        fed2 = draft_forward(model, cache, tokens[:, 9:], hidden[:, 9:], torch.arange(9, 12)[None])  # after a cached prefix
        tree = draft_forward(model, cache, tokens[:, :3], frontier, torch.full((1, 3), 12), mask)
        cache.truncate(12)
        one = draft_forward(model, cache, tokens[:, :1], frontier[:, :1], torch.tensor([[12]]))
        return [fed, fed2, tree, one]

    with torch.inference_mode():
        for expected, got in zip(passes(draft), passes(fused)):
            assert got.dtype == expected.dtype and torch.equal(got, expected)
        config = DecodingConfig(max_new_tokens=30, **TREE)
        input_ids = prompt(7, 21, VOCAB)
        trees = [draft_step_tree(d, extend_context(target, d, input_ids, config)[0], config)[1] for d in (draft, fused)]
        assert torch.equal(trees[0].tokens, trees[1].tokens) and torch.equal(trees[0].parents, trees[1].parents)
        baseline = baseline_generate(target, input_ids, config).tokens.tolist()
        assert speculative_generate(target, fused, input_ids, config).tokens.tolist() == baseline
