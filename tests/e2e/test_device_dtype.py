"""The public API on half-precision models and off the default device (issue 16, part 3).

There is no GPU on the test machines, so device handling is tested with a trap: inside
`default_device_trap()` the default device is `meta`, while the model and its inputs live on the
CPU. Code that makes a tensor without saying where (`torch.zeros(n)`, `torch.arange(n)`, an
`nn.Module()` built for generated code) then gets a meta tensor, exactly as it would get a CPU
tensor beside a CUDA model; the trap records each such call with the line that made it. A model on
CUDA differs from this only in which device is "the other one", so code that passes the trap puts
every tensor it makes on the model's or the input's device.
"""

from __future__ import annotations

import contextlib
import re
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

import asgnas_ir as ai
from asgnas_ir.testing import load_generated, run_torch
from asgnas_ir.tolerance import rtol
from tests.models import REPLICAS, example_inputs

HALF = [torch.bfloat16, torch.float16]


class _MetaRecorder(TorchFunctionMode):
    """Records every torch call that returns a meta tensor when nothing it was given was meta and no
    device was named: a tensor made on the default device."""

    def __init__(self) -> None:
        super().__init__()
        self.strays: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        given = tree_flatten((args, kwargs))[0]
        named = "device" in kwargs or any(isinstance(a, (str, torch.device)) and str(a) == "meta" for a in given)
        made_here = not named and not any(isinstance(a, torch.Tensor) and a.is_meta for a in given)
        if made_here and any(isinstance(r, torch.Tensor) and r.is_meta for r in tree_flatten(result)[0]):
            frames = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename]
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
            self.strays.append(f"{getattr(func, '__name__', func)} at {where}")
        return result


@contextlib.contextmanager
def default_device_trap() -> Iterator[list[str]]:
    """Make `meta` the default device and yield the list of calls that put a tensor there."""
    recorder = _MetaRecorder()
    with torch.device("meta"), recorder:
        yield recorder.strays


def _cast(inputs: tuple[torch.Tensor, ...], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    return tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs)


class TinyDecoder(nn.Module):
    """Token and position embeddings, a causal mask built in forward, one attention block: the
    constants generated code must rebuild at the call's size and on the input's device."""

    def __init__(self, vocab: int = 40, dim: int = 16, heads: int = 2, max_len: int = 32) -> None:
        super().__init__()
        self.heads = heads
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        b, n = idx.shape
        positions = torch.arange(n, device=idx.device)
        h = self.tok(idx) + self.pos(positions)
        q, k, v = self.qkv(self.norm(h)).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        causal = torch.triu(torch.full((n, n), float("-inf"), device=idx.device), diagonal=1)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=causal)
        h = h + self.proj(attended.transpose(1, 2).reshape(b, n, -1))
        return self.head(h)


def _decoder() -> tuple[nn.Module, tuple[torch.Tensor]]:
    torch.manual_seed(0)
    return TinyDecoder().eval(), (torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(0)),)


# ---- half precision --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", ["resnet_basic", "vit_encoder"])
def test_check_passes_in_half_precision(name: str, dtype: torch.dtype) -> None:
    """check on a bfloat16 / float16 replica: compiled, pruned, generated and compared in that dtype,
    within the tolerance the dtype allows (DESIGN §4, asgnas_ir.tolerance)."""
    replica = REPLICAS[name]
    report = ai.check(replica.build().to(dtype), _cast(example_inputs(replica), dtype))
    assert report.ok, report.reason
    assert report.zeroed > 0 and report.params_sub < report.params_full
    dtype_name = str(dtype).removeprefix("torch.")
    assert report.tolerance == pytest.approx(rtol(dtype_name) * report.max_ref)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_compile_space_subnet_update_weights_keep_the_dtype(dtype: torch.dtype, tmp_path: Path) -> None:
    """A half-precision model's params keep their dtype through compile, subnet and codegen; after a
    change to the live model, update_weights carries the new values (exactly: a bfloat16 value is a
    float32 one), and the generated sub-network runs in that dtype and matches the zeroed model."""
    from asgnas_ir.backends.torch.binding import zero_slices_

    replica = REPLICAS["resnet_basic"]
    model = replica.build().to(dtype)
    inputs = _cast(example_inputs(replica), dtype)
    dtype_name = str(dtype).removeprefix("torch.")
    graph = ai.compile(model, inputs)
    assert {p.dtype for p in graph.params.values() if p.trainable} == {dtype_name}

    with torch.no_grad():  # "training": every weight moves
        for p in model.parameters():
            p.mul_(0.5).add_(0.01)
    graph.update_weights(model)
    live = dict(model.named_parameters())
    carried = [(n, live[p.source]) for n, p in graph.params.items() if p.source in live]
    assert carried
    for param_name, tensor in carried:
        assert torch.equal(torch.from_numpy(graph.weights[param_name]).to(dtype), tensor.detach()), param_name

    space = ai.search_space(graph)
    zero = ai.random_zero_groups(graph, space, 0.5, seed=0)
    sub = ai.subnet(graph, space, zero)
    assert {p.dtype for p in sub.params.values() if p.trainable} == {dtype_name}
    ai.codegen(sub, target="torch", out_dir=tmp_path)
    generated = load_generated(tmp_path)
    assert {p.dtype for p in generated.parameters()} == {dtype}

    zero_slices_(model, graph, [s for gid in zero for s in space.group(gid).slices])
    with torch.no_grad():
        expected = model(*inputs)
    from asgnas_ir.testing import assert_outputs_match

    assert_outputs_match(run_torch(generated, inputs), expected, [dtype_name])


# ---- devices ---------------------------------------------------------------------------------


def test_the_trap_catches_a_tensor_made_without_a_device() -> None:
    """The trap is not vacuous: a model that builds its positions with `torch.arange(n)` is caught,
    with the line that did it."""

    class Careless(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.arange(x.shape[-1])

    with default_device_trap() as strays, pytest.raises(RuntimeError, match="meta"):
        Careless()(torch.zeros(2, 3, device="cpu"))  # as a CUDA input would: two devices in one op
    assert strays and "arange" in strays[0] and "test_device_dtype.py" in strays[0]


@pytest.mark.parametrize("mode", ["prune", "erase"])
@pytest.mark.parametrize("name", ["resnet_basic", "vit_encoder"])
def test_check_makes_every_tensor_on_the_model_s_device(name: str, mode: str) -> None:
    """check (re-randomizing, calibrating, zeroing, building the generated model, comparing at other
    batch sizes) on a model whose device is not the default one: nothing lands on the default device
    and the check passes."""
    replica = REPLICAS[name]
    model, inputs = replica.build(), example_inputs(replica)
    with default_device_trap() as strays:
        report = ai.check(model, inputs, mode=mode, seed=1, frontend="fx")
    assert strays == []
    assert report.ok, report.reason


def test_the_api_on_a_model_off_the_default_device_with_positions_and_a_causal_mask(tmp_path: Path) -> None:
    """compile, search_space, subnet, update_weights, codegen and the generated model itself, all
    inside the trap, for a model that builds position ids and a causal mask in forward."""
    model, inputs = _decoder()
    with default_device_trap() as strays:
        graph = ai.compile(model, inputs, frontend="fx")
        graph.update_weights(model)
        space = ai.search_space(graph, mode="prune")
        sub = ai.subnet(graph, space, ai.random_zero_groups(graph, space, 0.5, seed=0))
        ai.codegen(sub, target="torch", out_dir=tmp_path)
        generated = load_generated(tmp_path, device=inputs[0].device)
        outputs = generated(*inputs)
        report = ai.check(model, inputs, frontend="fx")
    assert strays == []
    assert outputs.device == inputs[0].device and not outputs.is_meta
    assert {p.device for p in generated.parameters()} == {inputs[0].device}
    assert report.ok, report.reason


def test_generated_forward_builds_its_constants_on_the_input_s_device(tmp_path: Path) -> None:
    """The generated forward passes `device=<input>.device` to every tensor it creates (positions,
    the causal mask), and runs at another sequence length with nothing on the default device."""
    model, inputs = _decoder()
    graph = ai.compile(model, inputs, frontend="fx")
    ai.codegen(graph, target="torch", out_dir=tmp_path)
    source = (tmp_path / "model.py").read_text()
    forward = source[source.index("def forward"): source.index("\ndef load")]
    made = re.findall(r"torch\.(arange|ones|zeros|full|empty|tensor|eye|rand\w*)\((.*?)\)(?=[.\s,)]|$)", forward, re.S)
    assert {kind for kind, _ in made} >= {"arange", "ones"}, forward
    assert all("device=idx.device" in arguments for _, arguments in made), made

    generated = load_generated(tmp_path)
    longer = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(1))
    with default_device_trap() as strays:
        actual = generated(longer)
    assert strays == []
    with torch.no_grad():
        expected = model(longer)
    from asgnas_ir.testing import assert_outputs_match

    assert_outputs_match(actual, expected)
