"""``sample --backend hf``: the target answers in this process, continuously batched.

:class:`LocalChatClient` has the HTTP client's ``complete(messages, params)``, so the sample
run (shards, journal, resume, failures) is the same for both backends. Requests queue up; a
driver task hands the queue to :class:`BatchEngine`:

- **admission**: new prompts are prefilled in length-sorted chunks (right-padded) and their
  keys and values copied into free row slots of the cache; running rows are not touched.
- **steps**: one token for every row (:mod:`eagle3cli.target.kv_cache`: a row-ragged cache
  written in place, and a one-token attention without copies), then per-row stopping and
  sampling; a finished row frees its slot. When half the slots are free and nothing waits,
  the free ones are dropped.

Sampling follows vLLM's request semantics: ``temperature`` 0 is greedy; otherwise top-p
nucleus sampling from a generator seeded with the request's ``seed``, so an answer does not
depend on which rows it was batched with (up to float rounding of other matrix shapes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from eagle3cli.chat_render import apply_tokenizer_template
from eagle3cli.config import SampleConfig
from eagle3cli.data.records import Turn
from eagle3cli.decoding.verify import sampling_probs
from eagle3cli.errors import Eagle3Error
from eagle3cli.serving.client import ChatReply, RequestFailed, SamplingParams
from eagle3cli.target.kv_cache import RaggedCache, cache_keyword, check_full_attention, use_decode_attention

PREFILL_TOKENS = 8192  # padded prompt tokens per prefill forward


@dataclass
class Request:
    """One chat completion: its prompt ids and sampling, then what was generated."""

    prompt: list[int]
    params: SamplingParams
    max_new_tokens: int
    future: asyncio.Future[ChatReply] | None = None
    generator: torch.Generator | None = None
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        if self.params.temperature > 0:
            self.generator = torch.Generator().manual_seed(self.params.seed if self.params.seed is not None else 0)


class BatchEngine:
    """Row slots of one continuously batched generation on ``model`` (see the module docstring)."""

    def __init__(self, model: nn.Module, stop_ids: Sequence[int], *, batch_size: int, storage_dtype: torch.dtype) -> None:
        check_full_attention(model)
        use_decode_attention(model)
        self.model = model
        self.cache_keyword = cache_keyword(model)
        self.decoder = model.get_decoder()  # prefill runs the decoder alone: logits of last positions only
        self.decoder_cache_keyword = cache_keyword(self.decoder)
        self.device = next(model.parameters()).device
        self.stop_ids = frozenset(stop_ids)
        self.batch_size = batch_size
        config = model.config.get_text_config()
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.cache = RaggedCache(config.num_hidden_layers, storage_dtype)
        self.rows: list[Request | None] = []  # a slot per cache row; None where it is free
        self.lengths: list[int] = []  # positions each row holds
        self.next_tokens = torch.zeros(0, dtype=torch.long, device=self.device)  # sampled, not yet in the cache

    @property
    def num_running(self) -> int:
        return sum(row is not None for row in self.rows)

    @property
    def free_slots(self) -> int:
        return self.batch_size - self.num_running

    @torch.inference_mode()
    def advance(self, admitted: Sequence[Request]) -> list[Request]:
        """Admit ``admitted`` (at most :attr:`free_slots`), then step once; the requests finished."""
        finished = self._admit(admitted) if admitted else []
        if self.num_running and self.num_running <= len(self.rows) // 2:
            self._compact()
        if self.num_running:
            finished += self._step()
        return finished

    def _admit(self, admitted: Sequence[Request]) -> list[Request]:
        """Prefill ``admitted`` and put the unfinished ones into free slots."""
        finished: list[Request] = []
        for chunk in _prefill_chunks(admitted):
            keys_values, first = self._prefill(chunk)
            slots, rows = [], []
            for index, request in enumerate(chunk):
                if self._record(request, int(first[index])):
                    finished.append(request)
                    continue
                slots.append(self._free_slot())
                rows.append(index)
                self.rows[slots[-1]] = request
                self.lengths[slots[-1]] = len(request.prompt)
            if not slots:
                continue
            slot_ids = torch.tensor(slots, device=self.device)
            row_ids = torch.tensor(rows, device=self.device)
            longest = max(self.lengths)
            for layer, (keys, values) in zip(self.cache.layers, keys_values):
                layer.reserve(len(self.rows), self.num_kv_heads, self.head_dim, longest + 1, self.device)
                layer.place(slot_ids, keys[row_ids], values[row_ids])
            self.next_tokens[slot_ids] = first[row_ids]
        return finished

    def _free_slot(self) -> int:
        """A free row slot, growing the rows (up to ``batch_size``) when none is free."""
        if None not in self.rows:
            grown = min(self.batch_size, max(2 * len(self.rows), 8))
            self.rows += [None] * (grown - len(self.rows))
            self.lengths += [0] * (grown - len(self.lengths))
            self.next_tokens = torch.cat([self.next_tokens, self.next_tokens.new_zeros(grown - len(self.next_tokens))])
            for layer in self.cache.layers:
                if layer.key_buffer is not None:
                    layer.reserve(grown, self.num_kv_heads, self.head_dim, layer.key_buffer.shape[2], self.device)
        return self.rows.index(None)

    def _compact(self) -> None:
        """Drop the free slots (the tail of a run, when fewer rows are left)."""
        keep = [index for index, row in enumerate(self.rows) if row is not None]
        self.cache.keep_rows(torch.tensor(keep, device=self.device))
        self.rows = [self.rows[index] for index in keep]
        self.lengths = [self.lengths[index] for index in keep]
        self.next_tokens = self.next_tokens[torch.tensor(keep, device=self.device)]

    def _prefill(self, chunk: Sequence[Request]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """One right-padded forward of ``chunk``'s prompts: each layer's keys and values (positions
        from 0) and each prompt's first sampled token."""
        from transformers import DynamicCache

        length = max(len(request.prompt) for request in chunk)
        ids = torch.zeros((len(chunk), length), dtype=torch.long)
        mask = torch.zeros((len(chunk), length), dtype=torch.long)
        for index, request in enumerate(chunk):
            ids[index, : len(request.prompt)] = torch.tensor(request.prompt)
            mask[index, : len(request.prompt)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = DynamicCache()
        hidden = self.decoder(
            input_ids=ids, attention_mask=mask, use_cache=True, **{self.decoder_cache_keyword: cache},
        ).last_hidden_state
        last = torch.tensor([len(request.prompt) - 1 for request in chunk], device=self.device)
        logits = self.model.get_output_embeddings()(hidden[torch.arange(len(chunk), device=self.device), last])
        return [(layer.keys, layer.values) for layer in cache.layers], self._choose(chunk, logits)

    def _step(self) -> list[Request]:
        """One token for every row; the requests that ended with it."""
        lengths = torch.tensor(self.lengths, device=self.device)
        longest = max(self.lengths)
        self.cache.set_lengths(lengths, longest)
        mask = (torch.arange(longest + 1, device=self.device)[None] <= lengths[:, None]).long()
        logits = self.model(
            input_ids=self.next_tokens[:, None], attention_mask=mask, position_ids=lengths[:, None],
            use_cache=True, **{self.cache_keyword: self.cache.hf_cache()},
        ).logits[:, -1]
        self.next_tokens = self._choose(self.rows, logits)
        finished = []
        for slot, (row, token) in enumerate(zip(self.rows, self.next_tokens.tolist())):
            if row is None:
                continue
            self.lengths[slot] += 1
            if self._record(row, token):
                finished.append(row)
                self.rows[slot] = None
                self.lengths[slot] = 0
        return finished

    def _choose(self, rows: Sequence[Request | None], logits: torch.Tensor) -> torch.Tensor:
        """The next token of every row: argmax for greedy rows, a seeded top-p draw otherwise."""
        logits = logits.float()
        tokens = logits.argmax(dim=-1)
        for index, row in enumerate(rows):
            if row is not None and row.generator is not None:
                tokens[index] = sample_token(logits[index], row.params.temperature, row.params.top_p, row.generator)
        return tokens

    def _record(self, request: Request, token: int) -> bool:
        """Append ``token``; whether the request is finished now (stop token or length)."""
        request.tokens.append(token)
        if token in self.stop_ids:
            request.finish_reason = "stop"
        elif len(request.tokens) >= request.max_new_tokens:
            request.finish_reason = "length"
        return request.finish_reason is not None


def sample_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """A top-p (nucleus) draw from ``softmax(logits / temperature)`` with ``generator`` (on the CPU)."""
    probs = sampling_probs(logits.cpu(), temperature, top_p)
    return torch.multinomial(probs, 1, generator=generator)[0].to(logits.device)


def _prefill_chunks(requests: Sequence[Request]) -> list[list[Request]]:
    """``requests`` sorted by prompt length, cut so a chunk's padded size stays near :data:`PREFILL_TOKENS`."""
    chunks: list[list[Request]] = []
    for request in sorted(requests, key=lambda request: len(request.prompt)):
        if chunks and (len(chunks[-1]) + 1) * len(request.prompt) <= PREFILL_TOKENS:
            chunks[-1].append(request)
        else:
            chunks.append([request])
    return chunks


class LocalChatClient:
    """``complete(messages, params)`` answered by a :class:`BatchEngine`. The engine steps in the
    event loop's own thread (a step blocks the loop; records are journaled between steps): run
    from a worker thread, torch's CPU operators started a second OpenMP pool beside the main
    thread's, and the two fought over the cores (steps ~1.4x slower here)."""

    gave_up = False

    def __init__(self, engine: BatchEngine, tokenizer, *, max_context: int) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_context = max_context
        self.pending: list[Request] = []
        self.wakeup = asyncio.Event()
        self.driver: asyncio.Task[None] | None = None

    def down_message(self) -> str:
        return ""

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> ChatReply:
        """The reply to ``messages``; raises :class:`RequestFailed` for a prompt that does not fit."""
        prompt = self.prompt_ids(messages, params.enable_thinking)
        room = self.max_context - len(prompt)
        if room < 1:
            raise RequestFailed(f"the prompt has {len(prompt)} tokens; the model's context is {self.max_context}")
        request = Request(prompt, params, min(params.max_tokens, room))
        request.future = asyncio.get_running_loop().create_future()
        self.pending.append(request)
        self.wakeup.set()
        if self.driver is None:
            self.driver = asyncio.create_task(self._drive())
        return await request.future

    def prompt_ids(self, messages: list[dict[str, str]], enable_thinking: bool) -> list[int]:
        """The chat template's generation prompt, as a vLLM server renders it."""
        turns = [Turn(role=message["role"], content=message["content"]) for message in messages]
        text = apply_tokenizer_template(self.tokenizer, turns, enable_thinking=enable_thinking, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    async def _drive(self) -> None:
        """Hand queued requests to the engine and step it until nothing is left, then wait."""
        engine = self.engine
        while True:
            if not engine.num_running and not self.pending:
                self.wakeup.clear()
                await self.wakeup.wait()
            await asyncio.sleep(0)  # let the records dispatched in this tick queue up
            admitted: list[Request] = []
            if self.pending and engine.free_slots >= min(len(self.pending), max(1, engine.batch_size // 8)):
                admitted, self.pending = self.pending[:engine.free_slots], self.pending[engine.free_slots:]
            try:
                finished = engine.advance(admitted)  # in this thread: torch's thread pool belongs to it
            except Exception as error:
                failure = error if isinstance(error, Eagle3Error) else Eagle3Error(
                    f"the target failed in this process ({type(error).__name__}: {error})",
                    hint="if memory ran out, lower --batch-size; rerun the same command to resume",
                )
                for request in [*engine.rows, *admitted, *self.pending]:
                    if request is not None and request.future is not None and not request.future.done():
                        request.future.set_exception(failure)
                engine.rows, engine.lengths, self.pending = [None] * len(engine.rows), [0] * len(engine.rows), []
                continue
            for request in finished:
                self._answer(request)

    def _answer(self, request: Request) -> None:
        tokens = request.tokens
        if request.finish_reason == "stop":
            tokens = tokens[:-1]
        content = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if request.future is not None and not request.future.done():
            request.future.set_result(ChatReply(content, request.finish_reason or "stop", len(request.tokens)))

    async def aclose(self) -> None:
        if self.driver is not None:
            self.driver.cancel()
            try:
                await self.driver
            except asyncio.CancelledError:
                pass


def open_local_client(config: SampleConfig) -> tuple[LocalChatClient, str]:
    """The target of ``config`` loaded for in-process sampling, and a line saying where it runs."""
    from eagle3cli.target.hub import load_tokenizer, resolve_model_dir
    from eagle3cli.target.loading import load_pretrained, native_bf16, resolve_device

    assert config.target_model is not None
    directory = resolve_model_dir(config.target_model)
    tokenizer = load_tokenizer(str(directory), trust_remote_code=config.trust_remote_code)
    if not getattr(tokenizer, "chat_template", None):
        raise Eagle3Error(
            f"the tokenizer in {directory} has no chat template, which sampling renders prompts with",
            hint="use a chat (instruct) model, or add a chat_template to its tokenizer_config.json",
        )
    device = resolve_device(config.device, 0)
    dtype = (torch.bfloat16 if native_bf16(device) else torch.float32) if config.dtype == "auto" else getattr(torch, config.dtype)
    model = load_pretrained(directory, dtype=dtype, device_map=str(device), trust_remote_code=config.trust_remote_code)
    # CPU: a float32 cache lets one-token attention run without copies (see target.kv_cache)
    storage = torch.float32 if device.type == "cpu" else dtype
    engine = BatchEngine(model, stop_token_ids(model, tokenizer), batch_size=config.batch_size, storage_dtype=storage)
    max_context = getattr(model.config.get_text_config(), "max_position_embeddings", None) or tokenizer.model_max_length
    where = f"this process (transformers, {device.type}, {str(dtype).removeprefix('torch.')}, batch {config.batch_size})"
    return LocalChatClient(engine, tokenizer, max_context=int(max_context)), where


def stop_token_ids(model: nn.Module, tokenizer) -> list[int]:
    """The ids that end an answer, as vLLM takes them: the generation config's EOS ids and the tokenizer's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise Eagle3Error("the target defines no end-of-sequence token", hint="set eos_token_id in its generation_config.json")
    return ids
