"""Hypothesis strategies for hand-built ONNX graphs (onnx.helper), the ONNX side of issue 13.

- `gemm_graphs`: chains of Gemm (transB, alpha, beta drawn) with biases C of every broadcastable shape:
  none, (N,), (1, N), (1, 1), (M, 1) (per row, also when M == N, where a count of elements alone cannot
  tell it from a per-column bias) and (M, N); activations between them.
- `lying_graphs`: conv -> relu -> Reshape -> Gemm whose `value_info` states a wrong shape for the Reshape
  output; `ai.compile` of the file without example inputs must not believe it (or refuse the model).

A drawn description is a frozen dataclass whose `repr` rebuilds the model: `gemm_model(eval(text))`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

OPSETS = (11, 13, 17, 19)


@dataclass(frozen=True)
class GemmLayer:
    out: int
    trans_b: bool
    alpha: float
    beta: float
    bias: str  # none, n, 1n, 11, m1, mn
    act: str  # none, Relu, Sigmoid, Tanh


@dataclass(frozen=True)
class GemmGraph:
    rows: int  # M, the batch rows of A
    features: int  # K
    layers: tuple[GemmLayer, ...]
    opset: int = 13

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.rows, self.features)


def _bias_shape(kind: str, m: int, n: int) -> tuple[int, ...] | None:
    return {"none": None, "n": (n,), "1n": (1, n), "11": (1, 1), "m1": (m, 1), "mn": (m, n)}[kind]


def gemm_model(spec: GemmGraph, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    last, k = "X", spec.features
    for i, layer in enumerate(spec.layers):
        n = layer.out
        w = (rng.standard_normal((n, k) if layer.trans_b else (k, n)) / np.sqrt(k)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        inputs = [last, f"W{i}"]
        shape = _bias_shape(layer.bias, spec.rows, n)
        if shape is not None:
            inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), f"C{i}"))
            inputs.append(f"C{i}")
        out = f"gemm{i}"
        nodes.append(helper.make_node("Gemm", inputs, [out], name=f"Gemm_{i}", alpha=layer.alpha, beta=layer.beta,
                                      transB=int(layer.trans_b)))
        if layer.act != "none":
            nodes.append(helper.make_node(layer.act, [out], [f"act{i}"], name=f"{layer.act}_{i}"))
            out = f"act{i}"
        last, k = out, n
    nodes.append(helper.make_node("Identity", [last], ["Y"], name="output"))
    graph = helper.make_graph(
        nodes, "gemm_chain", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(spec.input_shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [spec.rows, k])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


@st.composite
def gemm_graphs(draw: st.DrawFn) -> GemmGraph:
    rows = draw(st.integers(2, 4))
    features = draw(st.integers(2, 5))
    layers = []
    # a scaled Gemm (alpha, beta != 1) is drawn for a whole graph at a time: the frontend may refuse it,
    # and a refused graph exercises none of its biases
    scaled = draw(st.integers(0, 5)) == 0
    scales = st.sampled_from([1.0, 0.5, 2.0, -1.0]) if scaled else st.just(1.0)
    for _ in range(draw(st.integers(1, 3))):
        # M == N half of the time: there (M, 1) and (N,) biases have the same number of elements
        out = rows if draw(st.booleans()) else draw(st.integers(2, 6))
        layers.append(GemmLayer(
            out=out,
            trans_b=draw(st.booleans()),
            alpha=draw(scales),
            beta=draw(scales),
            bias=draw(st.sampled_from(["none", "n", "1n", "11", "m1", "m1", "mn"])),
            act=draw(st.sampled_from(["none", "Relu", "Sigmoid", "Tanh"])),
        ))
    return GemmGraph(rows, features, tuple(layers), draw(st.sampled_from(OPSETS)))


@dataclass(frozen=True)
class LyingGraph:
    """X [B, C, S, S] -> Conv(C -> F, 3x3, pad 1) -> Relu -> Reshape(target) -> Gemm(transB) or MatMul -> Y [B, O]
    (or -> Softmax(axis -1) -> Reshape([B, F*S*S]) -> Y), with `value_info` stating `lie` as the Reshape
    output's shape (the truth is [B, F * S * S]) and, with `lie_output`, the graph output declared in the
    lie's terms too (a file whose metadata is consistently wrong)."""

    batch: int
    channels: int
    size: int
    filters: int
    classes: int
    target: tuple[int, ...]  # the Reshape's shape input: [B, -1] or [0, -1] or [B, F*S*S]
    lie: tuple[int, ...]
    consumer: str = "Gemm"
    lie_output: bool = False
    opset: int = 13

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.size, self.size)


def lying_model(spec: LyingGraph, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    c, s, f, o = spec.channels, spec.size, spec.filters, spec.classes
    flat = f * s * s
    fc_w = rng.standard_normal((o, flat) if spec.consumer == "Gemm" else (flat, o)) / np.sqrt(flat)
    inits = [
        numpy_helper.from_array((rng.standard_normal((f, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32), "conv_w"),
        numpy_helper.from_array((rng.standard_normal(f) * 0.1).astype(np.float32), "conv_b"),
        numpy_helper.from_array(np.asarray(spec.target, dtype=np.int64), "shape"),
        numpy_helper.from_array(fc_w.astype(np.float32), "fc_w"),
    ]
    nodes = [
        helper.make_node("Conv", ["X", "conv_w", "conv_b"], ["conv"], name="Conv_0", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"], name="Relu_0"),
        helper.make_node("Reshape", ["relu", "shape"], ["flat"], name="Reshape_0"),
    ]
    if spec.consumer == "Gemm":
        inits.append(numpy_helper.from_array((rng.standard_normal(o) * 0.1).astype(np.float32), "fc_b"))
        nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["Y"], name="Gemm_0", transB=1))
        out_shape = [spec.lie[0], o] if spec.lie_output else [spec.batch, o]
    elif spec.consumer == "MatMul":
        nodes.append(helper.make_node("MatMul", ["flat", "fc_w"], ["Y"], name="MatMul_0"))
        out_shape = [spec.lie[0], o] if spec.lie_output else [spec.batch, o]
    else:
        # a consumer that accepts any shape: believing the lie changes what the softmax normalises over
        inits.append(numpy_helper.from_array(np.asarray([spec.batch, flat], dtype=np.int64), "out_shape"))
        nodes += [helper.make_node("Softmax", ["flat"], ["soft"], name="Softmax_0", axis=-1),
                  helper.make_node("Reshape", ["soft", "out_shape"], ["Y"], name="Reshape_1")]
        out_shape = list(spec.lie) if spec.lie_output else [spec.batch, flat]
    graph = helper.make_graph(
        nodes, "lying_value_info", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(spec.input_shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, out_shape)], inits,
        value_info=[helper.make_tensor_value_info("flat", TensorProto.FLOAT, list(spec.lie))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.opset)])
    model.ir_version = 7
    return model


@st.composite
def lying_graphs(draw: st.DrawFn) -> LyingGraph:
    b, c, s, f = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.sampled_from([2, 3, 4])), draw(st.integers(2, 4))
    flat = f * s * s
    target = draw(st.sampled_from([(b, -1), (0, -1), (b, flat)]))
    lie = draw(st.sampled_from([
        (b * f, s * s),  # the same elements split otherwise (the lie of the repro)
        (b * flat // 2, 2) if flat % 2 == 0 else (b * flat, 1),
        (b, flat + draw(st.integers(1, 3))),  # a wrong feature count
        (b, f),  # the channel count only
        (b, f, s * s),  # a different rank
        (b, flat),  # the truth, so the strategy also draws honest files
    ]))
    return LyingGraph(b, c, s, f, draw(st.integers(1, 4)), target, lie, draw(st.sampled_from(["Gemm", "MatMul", "Softmax"])),
                      draw(st.booleans()), draw(st.sampled_from(OPSETS)))
