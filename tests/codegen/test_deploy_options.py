"""Deployment options of the generated torch code: `load(path=None, *, device=None, dtype=None,
channels_last=False)`, and whole-graph `torch.compile` of generated models.

Each model is a pruned replica (half its groups removed) against the replica whose groups were
zeroed in place, as `check` compares them; its weights are re-randomized so the outputs are not
degenerate.

bfloat16 tolerance. A bfloat16 output is about 2^-8 of its size away from the float32 one, so the
project's bfloat16 rule (8 ulps of max |reference|) cannot tell a model that computes in bfloat16
from one that left some weights in float32. Where the generated code runs the source's own kernels
(the CNN), it is compared with the source run in bfloat16 and must land within a quarter of the
source's own float32-to-bfloat16 shift (`gap`): a missing or partial cast computes next to the float32
source, about one gap away, and fails; the same kernels on the same bfloat16 weights agree (on this
CPU, bit for bit). Where the generated code calls other kernels than the source (the ViT's attention
is `scaled_dot_product_attention`, the source's `nn.MultiheadAttention` takes its own fast path) or
the source cannot run in bfloat16 at all (the Llama replica multiplies bfloat16 activations by
float32 rotary angles), the generated model is held to the project's bfloat16 rule against the float32
source, and every parameter, buffer and output must be bfloat16.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch.binding import rerandomize_, zero_slices_  # noqa: E402
from asgnas_ir.spec import import_file  # noqa: E402
from asgnas_ir.testing import assert_outputs_match  # noqa: E402
from tests.models import REPLICAS  # noqa: E402


def _inputs(name: str, batch: int, seed: int = 0) -> tuple[Any, ...]:
    generator = torch.Generator().manual_seed(seed)
    if name == "llama_decoder":
        return (torch.randint(0, 50, (batch, 16), generator=generator),)
    return (torch.randn(batch, 3, 32, 32, generator=generator),)


def _deployed(name: str, folder: Path) -> tuple[torch.nn.Module, ModuleType]:
    """The replica with half its prune groups zeroed in place, and the generated module of its subnet."""
    live = copy.deepcopy(REPLICAS[name].build()).eval()
    rerandomize_(live, 0, _inputs(name, 8))
    example = _inputs(name, 1)
    graph = ai.compile(live, example)
    space = ai.search_space(graph)
    zero = ai.random_zero_groups(graph, space, 0.5, seed=0)
    zero_slices_(live, graph, [s for gid in zero for s in space.group(gid).slices])
    graph.update_weights(live)
    ai.codegen(ai.subnet(graph, space, zero), "torch", folder)
    return live, import_file(folder / "model.py", f"deploy_{name}")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, ModuleType]:
    return _deployed("resnet_bottleneck", tmp_path_factory.mktemp("cnn"))


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, ModuleType]:
    return _deployed("vit_encoder", tmp_path_factory.mktemp("vit"))


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, ModuleType]:
    return _deployed("llama_decoder", tmp_path_factory.mktemp("llama"))


def _floating_state(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]


def test_default_load_is_unchanged(cnn: tuple[torch.nn.Module, ModuleType]) -> None:
    """`load()` and `load(path)`: float32, contiguous weights, eval mode, the zeroed source's outputs."""
    live, module = cnn
    for model in (module.load(), module.load(Path(module.__file__).with_name("weights.safetensors"))):
        assert not model.training and model.channels_last is False
        assert all(t.dtype == torch.float32 and t.is_contiguous() for t in _floating_state(model))
        x = _inputs("resnet_bottleneck", 3, seed=1)
        with torch.no_grad():
            assert_outputs_match(model(*x), live(*x))


def test_channels_last_float32_matches_and_feeds_convolutions_nhwc(cnn: tuple[torch.nn.Module, ModuleType]) -> None:
    """channels_last=True: 4-D weights in channels-last memory, the image converted once at the top of
    forward so the first convolution reads NHWC, and the outputs within the DESIGN tolerance."""
    live, module = cnn
    model = module.load(channels_last=True)
    assert model.channels_last is True
    weights = [t for t in model.parameters() if t.dim() == 4]
    assert weights and all(t.is_contiguous(memory_format=torch.channels_last) for t in weights)
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    seen: list[bool] = []
    first_conv.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    for batch in (1, 5):
        x = _inputs("resnet_bottleneck", batch, seed=batch)
        with torch.no_grad():
            assert_outputs_match(model(*x), live(*x))
    assert seen == [True, True]
    source = Path(module.__file__).read_text()
    assert source.count("memory_format=torch.channels_last)") == 2  # the input in forward, the weights in load


def test_bfloat16_cnn_computes_what_the_source_computes_in_bfloat16(cnn: tuple[torch.nn.Module, ModuleType]) -> None:
    """dtype=torch.bfloat16 (with and without channels_last) against the zeroed source run in bfloat16:
    within a quarter of the source's own float32-to-bfloat16 shift (see the module docstring)."""
    live, module = cnn
    source_bf16 = copy.deepcopy(live).to(torch.bfloat16)
    x = _inputs("resnet_bottleneck", 4, seed=2)
    xb = tuple(t.to(torch.bfloat16) for t in x)
    with torch.no_grad():
        reference, expected = live(*x), source_bf16(*xb).float()
        gap = float((expected - reference).abs().max())
        assert gap > 1e-3 * float(reference.abs().max())  # bfloat16 visibly moves the outputs: the test can fail
        for channels_last in (False, True):
            model = module.load(dtype=torch.bfloat16, channels_last=channels_last)
            assert all(t.dtype == torch.bfloat16 for t in _floating_state(model))
            out = model(*xb)
            assert out.dtype == torch.bfloat16
            assert float((out.float() - expected).abs().max()) <= gap / 4
        # the check is sensitive: the float32 generated model lands next to the float32 source, too far
        assert float((module.load()(*x) - expected).abs().max()) > gap / 4


def test_bfloat16_vit_within_the_bfloat16_rule(vit: tuple[torch.nn.Module, ModuleType]) -> None:
    live, module = vit
    model = module.load(dtype=torch.bfloat16)
    assert all(t.dtype == torch.bfloat16 for t in _floating_state(model))
    x = _inputs("vit_encoder", 3, seed=3)
    with torch.no_grad():
        out = model(*(t.to(torch.bfloat16) for t in x))
        assert out.dtype == torch.bfloat16
        assert_outputs_match(out, live(*x), dtypes=["bfloat16"])


def test_bfloat16_llama_keeps_its_rotary_angles_in_float32(llama: tuple[torch.nn.Module, ModuleType]) -> None:
    """The rotary angles are built in forward at float32, as the source wrote them, and cast once where
    they meet the bfloat16 activations (`cos.to(q.dtype)`): the model runs, returns bfloat16 logits
    within the bfloat16 rule of the float32 source, and the float32 model is unchanged by the casts."""
    live, module = llama
    source = Path(module.__file__).read_text()
    assert "arange(seq_len, dtype=torch.float32" in source and "cos.to(" in source
    model = module.load(dtype=torch.bfloat16)
    assert all(t.dtype == torch.bfloat16 for t in _floating_state(model))
    for batch in (1, 3):
        ids = _inputs("llama_decoder", batch, seed=batch)
        with torch.no_grad():
            out = model(*ids)
            assert out.dtype == torch.bfloat16
            assert_outputs_match(out, live(*ids), dtypes=["bfloat16"])
            assert_outputs_match(module.load()(*ids), live(*ids))


def test_device_and_dtype_options(cnn: tuple[torch.nn.Module, ModuleType]) -> None:
    """device moves every tensor (the meta device: no GPU needed), dtype casts floating ones only."""
    _, module = cnn
    on_meta = module.load(device="meta")
    assert all(t.device.type == "meta" for t in [*on_meta.parameters(), *on_meta.buffers()])
    half = module.load(device=torch.device("cpu"), dtype=torch.float16)
    assert all(t.dtype == torch.float16 for t in _floating_state(half))
    assert any(not t.is_floating_point() for t in half.buffers())  # BN's num_batches_tracked stays an integer


def test_refusals_name_the_model_and_the_way_out(llama: tuple[torch.nn.Module, ModuleType],
                                                 cnn: tuple[torch.nn.Module, ModuleType]) -> None:
    with pytest.raises(ValueError, match=r"TinyLlama has no 2-D convolution.*without channels_last=True"):
        llama[1].load(channels_last=True)
    with pytest.raises(ValueError, match=r"floating dtype such as torch.bfloat16, not torch.int8"):
        cnn[1].load(dtype=torch.int8)


def test_three_d_convolutions_and_fixed_casts_are_refused(tmp_path: Path) -> None:
    """torch's channels_last cannot hold 5-D weights; a model that casts values itself (a mixed-precision
    source) would feed float32 values to bfloat16 layers."""

    class Volume(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv3d = torch.nn.Conv3d(2, 4, 3)
            self.conv2d = torch.nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv2d(self.conv3d(x).to(torch.float16).to(torch.float32).mean(2))

    ai.codegen(ai.compile(Volume().eval(), (torch.randn(1, 2, 5, 6, 6),)), "torch", tmp_path)
    module = import_file(tmp_path / "model.py", "deploy_volume")
    with pytest.raises(ValueError, match=r"Volume has 3-D convolutions.*without channels_last=True"):
        module.load(channels_last=True)
    with pytest.raises(ValueError, match=r"Volume rounds values to float16, float32 itself.*without dtype="):
        module.load(dtype=torch.bfloat16)


def _compiled_matches_eager(model: torch.nn.Module, name: str, dtype: Any = None) -> None:
    """fullgraph=True raises on any graph break; the second batch size must reuse the first graph."""
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=True)
    for batch, stance in ((2, "default"), (5, "fail_on_recompile")):
        x = tuple(t.to(dtype) if dtype is not None and t.is_floating_point() else t for t in _inputs(name, batch, seed=batch))
        with torch.no_grad(), torch.compiler.set_stance(stance):
            out = compiled(*x)
        with torch.no_grad():
            assert_outputs_match(out, model(*x), dtypes=None if dtype is None else ["bfloat16"])


@pytest.mark.slow
def test_torch_compile_fullgraph_cnn(cnn: tuple[torch.nn.Module, ModuleType]) -> None:
    torch._dynamo.reset()
    _compiled_matches_eager(cnn[1].load(), "resnet_bottleneck")
    torch._dynamo.reset()
    _compiled_matches_eager(cnn[1].load(dtype=torch.bfloat16, channels_last=True), "resnet_bottleneck", torch.bfloat16)


@pytest.mark.slow
def test_torch_compile_fullgraph_vit(vit: tuple[torch.nn.Module, ModuleType]) -> None:
    torch._dynamo.reset()
    _compiled_matches_eager(vit[1].load(), "vit_encoder")


@pytest.mark.slow
def test_torch_compile_fullgraph_llama(llama: tuple[torch.nn.Module, ModuleType]) -> None:
    torch._dynamo.reset()
    _compiled_matches_eager(llama[1].load(), "llama_decoder")
    torch._dynamo.reset()
    _compiled_matches_eager(llama[1].load(dtype=torch.bfloat16), "llama_decoder", torch.bfloat16)


@pytest.mark.slow
def test_channels_last_on_a_keras_graph_needs_no_input_conversion(tmp_path: Path) -> None:
    """A graph from Keras takes NHWC images and permutes them to NCHW for torch's convolutions, which
    already is channels-last memory: forward converts nothing, load converts the weights, and the
    outputs match the float32 load."""
    keras = pytest.importorskip("keras")
    inp = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(4, 3, name="c2")(hidden))
    x = torch.randn(2, 8, 8, 3, generator=torch.Generator().manual_seed(0))
    ai.codegen(ai.compile(model, x.numpy()), "torch", tmp_path)
    assert "self.channels_last" not in (tmp_path / "model.py").read_text()
    module = import_file(tmp_path / "model.py", "deploy_keras")
    nhwc = module.load(channels_last=True)
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in nhwc.parameters() if t.dim() == 4)
    first_conv = next(m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d))
    seen: list[bool] = []
    first_conv.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        assert_outputs_match(nhwc(x), module.load()(x))
    assert seen == [True]
