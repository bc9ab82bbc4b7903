"""Hugging Face transformers models through `frontend="auto"` (issue 17, part 1): fx cannot trace
transformers 5, so the export path serves them, through the adapter in `frontends/onnx/hf.py`.

The fast tests build the ONNX patterns those exports hold by hand (masks made of bools, the key's
transpose inside attention, RMSNorm's reciprocal, Phi-3's empty pass-through slice) and check each
against onnxruntime; the slow ones run `check` on every architecture from a tiny config at random
init (no download) and on a transformers-shaped decoder that needs no transformers install.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.errors import FrontendError  # noqa: E402
from asgnas_ir.frontends.onnx.export import lower_torch_onnx  # noqa: E402
from asgnas_ir.frontends.onnx.sized import plan  # noqa: E402
from asgnas_ir.ir.ops import Op  # noqa: E402

N = helper.make_node
RNG = np.random.default_rng(0)


def _model(nodes: list, inputs: list, inits: list, opset: int = 20) -> onnx.ModelProto:
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _floats(name: str, *shape: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _checked(proto: onnx.ModelProto, inputs: list[np.ndarray]) -> ai.Graph:
    report = ai.check(proto, inputs)
    assert report.ok, report
    return ai.compile(proto, inputs)


# ---- the ONNX patterns, by hand (fast) ------------------------------------------------------------


def test_attention_mask_of_bools_lowers_as_float_flags() -> None:
    """transformers' mask: the padding mask read at a grid of (batch, key) coordinates, and-ed with a
    causal triangle, or-ed with the diagonal, made additive by Where(c, 0, -inf)."""
    b, s = 2, 4
    grid = np.stack(np.broadcast_arrays(np.arange(b).reshape(b, 1, 1, 1), np.arange(s).reshape(1, 1, 1, s)), axis=-1)
    inits = [
        numpy_helper.from_array(grid.astype(np.int64), "grid"),
        numpy_helper.from_array(np.tril(np.ones((s, s), bool)).reshape(1, 1, s, s), "tri"),
        numpy_helper.from_array(np.eye(s, dtype=bool).reshape(1, 1, s, s), "diag"),
        numpy_helper.from_array(np.asarray(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.asarray(-np.inf, np.float32), "ninf"),
    ]
    nodes = [
        N("Cast", ["m"], ["mb"], to=TensorProto.BOOL),
        N("GatherND", ["mb", "grid"], ["pad"]),
        N("Not", ["pad"], ["npad"]),
        N("Not", ["npad"], ["pad2"]),
        N("And", ["pad2", "tri"], ["both"]),
        N("Or", ["both", "diag"], ["keep"]),
        N("Where", ["keep", "zero", "ninf"], ["bias"]),
        N("Add", ["x", "bias"], ["scores"]),
        N("Softmax", ["scores"], ["y"], axis=-1),
    ]
    inputs = [_floats("x", b, 1, s, s), helper.make_tensor_value_info("m", TensorProto.INT64, [b, s])]
    mask = np.array([[1, 1, 1, 1], [0, 1, 1, 0]], np.int64)  # the diagonal keeps every row alive
    graph = _checked(_model(nodes, inputs, inits), [RNG.standard_normal((b, 1, s, s)).astype(np.float32), mask])
    ops = [n.op for n in graph.nodes]
    assert Op.CAST in ops and Op.OPAQUE not in ops


def test_where_between_computed_tensors_and_a_large_negative() -> None:
    """T5 keeps its position bias where the mask allows and -3.4e38 elsewhere: c * x + (1 - c) * y
    is exact for finite branches, whatever their size."""
    inits = [numpy_helper.from_array(np.asarray(-3.4028235e38, np.float32), "floor")]
    nodes = [N("Cast", ["m"], ["mb"], to=TensorProto.BOOL), N("Neg", ["x"], ["x2"]), N("Where", ["mb", "x", "x2"], ["both"]),
             N("Where", ["mb", "both", "floor"], ["y"])]
    inputs = [_floats("x", 2, 3), helper.make_tensor_value_info("m", TensorProto.INT64, [2, 3])]
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    graph = _checked(_model(nodes, inputs, inits), [x, np.array([[1, 0, 1], [0, 0, 1]], np.int64)])
    assert Op.OPAQUE not in [n.op for n in graph.nodes]


def test_float_compared_for_equality_is_refused_by_name() -> None:
    inits = [numpy_helper.from_array(np.asarray(0.5, np.float32), "half"), numpy_helper.from_array(np.asarray(1.0, np.float32), "one"),
             numpy_helper.from_array(np.asarray(0.0, np.float32), "zero")]
    nodes = [N("Equal", ["x", "half"], ["same"], name="node_0"), N("Where", ["same", "one", "zero"], ["y"])]
    with pytest.raises(FrontendError, match="'node_0'.*Equal of run-time tensors is supported for integers"):
        ai.compile(_model(nodes, [_floats("x", 2, 3)], inits), [np.zeros((2, 3), np.float32)])


def test_position_ids_counted_from_the_ids() -> None:
    """RoBERTa's position ids: cumsum(ids != pad) * (ids != pad) + pad, as int32 and int64 arithmetic,
    looked up in a position table; its token types read an all-zero buffer at those positions."""
    pad = 1
    inits = [
        numpy_helper.from_array(np.asarray(pad, np.int64), "pad"),
        numpy_helper.from_array(np.asarray(1, np.int64), "axis"),
        numpy_helper.from_array(np.asarray(0, np.int32), "zero32"),
        numpy_helper.from_array(RNG.standard_normal((12, 3)).astype(np.float32), "table"),
        numpy_helper.from_array(np.zeros((2, 12), np.int64), "types"),
        numpy_helper.from_array(RNG.standard_normal((2, 3)).astype(np.float32), "type_table"),
    ]
    nodes = [
        N("Equal", ["ids", "pad"], ["is_pad"]), N("Not", ["is_pad"], ["real"]),
        N("Cast", ["real"], ["real32"], to=TensorProto.INT32), N("Cast", ["real32"], ["real64"], to=TensorProto.INT64),
        N("CumSum", ["real64", "axis"], ["count"]), N("CastLike", ["count", "real32"], ["count32"]),
        N("Add", ["count32", "zero32"], ["shifted"]), N("Mul", ["shifted", "real32"], ["kept"]),
        N("Cast", ["kept"], ["kept64"], to=TensorProto.INT64), N("Add", ["kept64", "pad"], ["positions"]),
        N("Gather", ["table", "positions"], ["by_position"]),
        N("GatherElements", ["types", "positions"], ["type_ids"], axis=1), N("Gather", ["type_table", "type_ids"], ["by_type"]),
        N("Add", ["by_position", "by_type"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])]
    graph = _checked(_model(nodes, inputs, inits), [np.array([[5, 7, 2, 9, 3], [4, 8, 1, 1, 1]], np.int64)])
    assert [n.op for n in graph.nodes].count(Op.CUMSUM) == 1


def test_key_transpose_through_a_merged_batch_is_one_permute() -> None:
    """torch's export of attention transposes k as Reshape([-1, S, D]) -> Transpose -> Reshape: one
    permute keeps the head axis (and the head groups of q and k tied)."""
    nodes = [
        N("Reshape", ["x", "merged"], ["flat"]),
        N("Transpose", ["flat"], ["turned"], perm=[0, 2, 1]),
        N("Reshape", ["turned", "back"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([-1, 4, 5], np.int64), "merged"),
             numpy_helper.from_array(np.array([2, 3, 5, 4], np.int64), "back")]
    graph = _checked(_model(nodes, [_floats("x", 2, 3, 4, 5)], inits), [RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)])
    assert [n.op for n in graph.nodes] == [Op.PERMUTE]
    assert graph.nodes[0].attrs.perm == (0, 1, 3, 2)


def test_rms_norm_reciprocal_and_empty_rotary_pass_through() -> None:
    """RMSNorm's rsqrt exports as Reciprocal(Sqrt); Phi-3's `cat([rotated, x[..., d:]])` with d the
    whole head slices nothing, which adds nothing to the Concat."""
    inits = [numpy_helper.from_array(np.asarray(v, np.int64), n) for n, v in
             (("two", [2]), ("end", [8]), ("big", [2**62]), ("axis", [2]))]
    inits.append(numpy_helper.from_array(np.asarray(2.0, np.float32), "p"))
    inits.append(numpy_helper.from_array(np.asarray(1e-6, np.float32), "eps"))
    nodes = [
        N("Pow", ["x", "p"], ["sq"]),
        N("ReduceMean", ["sq", "two"], ["ms"], keepdims=1),
        N("Add", ["ms", "eps"], ["mse"]),
        N("Sqrt", ["mse"], ["rms"]),
        N("Reciprocal", ["rms"], ["inv"]),
        N("Mul", ["x", "inv"], ["h"]),
        N("Slice", ["h", "end", "big", "axis"], ["rest"]),
        N("Concat", ["h", "rest"], ["y"], axis=-1),
    ]
    graph = _checked(_model(nodes, [_floats("x", 2, 3, 8)], inits), [RNG.standard_normal((2, 3, 8)).astype(np.float32)])
    ops = [n.op for n in graph.nodes]
    assert Op.SLICE not in ops and Op.CONCAT not in ops and Op.DIV in ops


def test_gather_elements_of_a_buffer_folds() -> None:
    """BERT reads its token_type_ids buffer [1, max_len] with GatherElements at the positions;
    onnx.reference fails on a leading axis of size 1, so the driver folds it with numpy."""
    inits = [numpy_helper.from_array(np.arange(10, dtype=np.float32).reshape(1, 10) * 0.5, "buffer"),
             numpy_helper.from_array(np.array([[3, 1, 4]], np.int64), "where")]
    nodes = [N("GatherElements", ["buffer", "where"], ["picked"], axis=1), N("Add", ["x", "picked"], ["y"])]
    graph = _checked(_model(nodes, [_floats("x", 2, 3)], inits), [np.zeros((2, 3), np.float32)])
    picked = next(graph.weights[n.params["value"]] for n in graph.nodes if n.op is Op.CONSTANT)
    np.testing.assert_array_equal(picked.reshape(-1), [1.5, 0.5, 2.0])


def test_position_ids_cast_to_float_at_run_time() -> None:
    """Rotary tables from position ids given as an input: an int64 tensor cast to float."""
    inits = [numpy_helper.from_array(np.array([1.0, 0.1], np.float32), "inv_freq"),
             numpy_helper.from_array(np.array([2], np.int64), "last")]
    nodes = [N("Cast", ["pos"], ["posf"], to=TensorProto.FLOAT), N("Unsqueeze", ["posf", "last"], ["col"]),
             N("Mul", ["col", "inv_freq"], ["angle"]), N("Cos", ["angle"], ["y"])]
    inputs = [helper.make_tensor_value_info("pos", TensorProto.INT64, [2, 5])]
    graph = _checked(_model(nodes, inputs, inits), [np.arange(10, dtype=np.int64).reshape(2, 5)])
    assert [n.op for n in graph.nodes][:1] == [Op.CAST]


@pytest.mark.parametrize(
    ("array", "axes", "expected"),
    [
        (np.arange(6).reshape(1, 6, 1), {1}, ((), "range")),  # position ids, rotary's column
        (np.broadcast_to(np.tril(np.ones((5, 5))), (3, 1, 5, 5)), {0, 2, 3}, ((0,), "triangle")),  # a causal mask per row
        (np.zeros((3, 7)), {0, 1}, ((0, 1), "plain")),  # token type ids of zeros
        (np.cos(np.arange(6.0)).reshape(1, 6, 1), {1}, None),  # a rotary table: computed at run time instead
        (np.arange(6).reshape(1, 6) + 1, {1}, None),  # not from 0
    ],
)
def test_sized_constant_plans(array: np.ndarray, axes: set[int], expected: tuple | None) -> None:
    assert plan(np.asarray(array), frozenset(axes)) == expected


# ---- a transformers-shaped decoder, no transformers needed (slow: three exports per check) ------


class _Config:
    use_cache = True

    def to_dict(self) -> dict:
        return {"hidden_size": 16}


class _Cache:
    """Stands for transformers' DynamicCache: neither a tensor nor a container of them."""


class TinyDecoder(torch.nn.Module):
    """What a transformers decoder does, in 40 lines: a config, `use_cache` (a cache object in a
    dict output), RMSNorm, rotary tables from arange(S), grouped-query attention (4 query heads
    over 2 KV heads, repeat_kv), a causal mask from position comparisons and an optional padding mask."""

    def __init__(self) -> None:
        super().__init__()
        self.config = _Config()
        self.embed = torch.nn.Embedding(50, 16)
        self.q = torch.nn.Linear(16, 16, bias=False)
        self.kv = torch.nn.Linear(16, 16, bias=False)
        self.o = torch.nn.Linear(16, 16, bias=False)
        self.norm = torch.nn.Parameter(torch.ones(16))
        self.register_buffer("inv_freq", 1.0 / (100 ** (torch.arange(0, 4, 2).float() / 4)), persistent=False)
        self.head = torch.nn.Linear(16, 50, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, use_cache: bool | None = None) -> dict:
        b, s = input_ids.shape
        x = self.embed(input_ids)
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.norm
        pos = torch.arange(s, device=x.device)
        freqs = pos[None, :, None].float() * self.inv_freq
        angle = torch.cat([freqs, freqs], -1)
        cos, sin = angle.cos()[:, None], angle.sin()[:, None]
        q = self.q(h).view(b, s, 4, 4).transpose(1, 2)
        k, v = self.kv(h).view(b, s, 2, 8).transpose(1, 2).split(4, dim=-1)

        def rotate(t: torch.Tensor) -> torch.Tensor:
            return t * cos + torch.cat([-t[..., 2:], t[..., :2]], -1) * sin

        q, k = rotate(q), rotate(k)
        k = k[:, :, None].expand(b, 2, 2, s, 4).reshape(b, 4, s, 4)
        v = v[:, :, None].expand(b, 2, 2, s, 4).reshape(b, 4, s, 4)
        mask = pos[None, :] <= pos[:, None]
        if attention_mask is not None:
            mask = mask[None, None] & attention_mask.bool()[:, None, None, :]
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.o(attended.transpose(1, 2).reshape(b, s, 16))
        out: dict = {"logits": self.head(x)}
        if use_cache is not False:
            out["past_key_values"] = _Cache()
        return out


def _ids(batch: int = 2, seq: int = 8, vocab: int = 100) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(0))


def _assert_any_size(report: ai.CheckReport, batch: int = 2, seq: int = 8) -> None:
    """`check` also ran the generated code at one more batch row and one token fewer."""
    assert report.ok, report
    firsts = [shapes[0] for shapes in report.shapes_checked]
    assert [batch + 1, seq] in firsts and [batch, seq - 1] in firsts, report.shapes_checked


@pytest.mark.slow
def test_transformers_shaped_decoder_through_auto() -> None:
    torch.manual_seed(0)
    model = TinyDecoder().eval()
    ids = _ids(seq=6, vocab=50)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, -2:] = 0  # right padding: every query row still sees a key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ai.check(model, ids, mode="prune")
        masked = ai.check(model, (ids, mask), mode="prune")
        graph = lower_torch_onnx(model, (ids, mask))  # one export, at the example's sizes
    _assert_any_size(plain, seq=6)
    _assert_any_size(masked, seq=6)
    assert plain.frontend == masked.frontend == "onnx"
    # sources are the model's own state_dict keys, not the adapter's `model.` ones
    assert {p.source for p in graph.params.values() if p.trainable} == set(model.state_dict())


# ---- transformers itself (slow: each check exports three times) -----------------------------------

_TINY = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64, "max_position_embeddings": 64}


def _build(name: str) -> torch.nn.Module:
    t = pytest.importorskip("transformers")  # here, not at import: the tests above run without it
    torch.manual_seed(0)
    builders = {
        "bert": lambda: t.BertModel(t.BertConfig(**_TINY)),
        "distilbert": lambda: t.DistilBertModel(t.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                                   max_position_embeddings=64)),
        "gpt2": lambda: t.GPT2LMHeadModel(t.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                       bos_token_id=0, eos_token_id=0)),
        "llama": lambda: t.LlamaForCausalLM(t.LlamaConfig(num_key_value_heads=2, **_TINY)),
        "mistral": lambda: t.MistralForCausalLM(t.MistralConfig(num_key_value_heads=2, **_TINY)),
        "qwen2": lambda: t.Qwen2ForCausalLM(t.Qwen2Config(num_key_value_heads=2, **_TINY)),
        "phi3": lambda: t.Phi3ForCausalLM(t.Phi3Config(num_key_value_heads=2, pad_token_id=0, bos_token_id=0, eos_token_id=0, **_TINY)),
        "roberta": lambda: t.RobertaModel(t.RobertaConfig(**_TINY)),
    }
    return builders[name]().eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert", "roberta", "distilbert", "gpt2", "llama", "mistral", "qwen2", "phi3"])
def test_hugging_face_model_passes_check_through_auto(name: str) -> None:
    model = _build(name)
    ids = _ids()
    ids[1, -3:] = 1  # padding tokens for RoBERTa (its padding_idx): its position ids skip them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ai.check(model, ids, mode="prune")
    _assert_any_size(report)
    assert report.frontend == "onnx" and report.params_sub < report.params_full


@pytest.mark.slow
def test_llama_param_sources_are_its_state_dict_keys() -> None:
    model = _build("llama")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = ai.compile(model, _ids())
    keys = set(dict(model.named_parameters(remove_duplicate=False)))
    trainable = {p.source for p in graph.params.values() if p.trainable}
    assert trainable <= keys and "model.layers.1.mlp.down_proj.weight" in trainable
    assert graph.meta.symbols == {"N": 2, "S": 8}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "extras"),
    [
        ("llama", ("attention_mask", "position_ids")),
        ("bert", ("attention_mask", "token_type_ids")),
        # given as inputs, after attention_mask and token_type_ids, as its forward binds them
        ("roberta", ("attention_mask", "token_type_ids", "position_ids")),
    ],
)
def test_attention_mask_and_position_ids_as_extra_inputs(name: str, extras: tuple[str, ...]) -> None:
    ids = _ids()
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, -2:] = 0
    offset = 2 if name == "roberta" else 0  # RoBERTa counts positions from padding_idx + 1
    given = {"attention_mask": mask, "position_ids": torch.arange(8).expand(2, 8) + offset,
             "token_type_ids": (torch.arange(8) >= 4).long().expand(2, 8)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ai.check(_build(name), (ids, *(given[e] for e in extras)), mode="prune")
    _assert_any_size(report)


@pytest.mark.slow
def test_generated_llama_follows_a_padding_mask_it_was_not_compiled_with(tmp_path) -> None:  # noqa: ANN001
    """Compiled with an all-ones mask, the generated model still reads the mask at run time: right
    padding matches everywhere, left padding at every position that is not padding (a query row with
    no key to attend to is garbage in both, and transformers fills it its own way)."""
    from asgnas_ir.testing import load_generated

    model = _build("llama")
    ids = _ids()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ai.codegen(ai.compile(model, (ids, torch.ones_like(ids))), "torch", tmp_path)
    generated = load_generated(tmp_path)
    right, left = torch.ones_like(ids), torch.ones_like(ids)
    right[1, -3:] = 0
    left[1, :3] = 0
    with torch.no_grad():
        for mask, rows in ((right, (slice(None), slice(None))), (left, (1, slice(3, None)))):
            expected, got = model(ids, attention_mask=mask).logits, generated(ids, mask)
            scale = float(expected.abs().max())
            assert float((expected - got)[rows].abs().max()) <= 1e-5 * max(scale, 1.0)
            assert float((expected - got)[0].abs().max()) <= 1e-5 * max(scale, 1.0)
