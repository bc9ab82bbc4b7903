"""nn.LSTM unrolled over the example's sequence length into linear layers and elementwise gates.

The IR has no recurrent op; its shapes are static, so the time loop runs here. Per layer and
direction the input projection of every step is one linear layer (`weight_ih`, `bias_ih`); each step
adds the recurrent projection of the previous hidden state (`weight_hh`, `bias_hh`, one shared
layer called once per step), splits the sum into the input, forget, cell and output gates, and
updates `c = f * c + i * g`, `h = o * tanh(c)`. The first step starts from zero state, so it has no
recurrent projection: its gates are the input projection plus `bias_hh`.

Hidden unit j of a layer is then one channel group: rows j of all four gates of both weights and
biases, and column j of `weight_hh`, tied across steps by the gate products. Zeroing the group makes
the unit's pre-activations zero, so `g = tanh(0) = 0`, `c` stays zero from its zero start, and
`h = o * tanh(c)` is exactly zero, whatever the sigmoid gates are.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
from torch import nn

from asgnas_ir.frontends.torch_fx.builder import Builder
from asgnas_ir.frontends.torch_fx.composite import _part
from asgnas_ir.frontends.torch_fx.functions import reshape_to
from asgnas_ir.frontends.torch_fx.modules import MODULES
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op


@MODULES.register(nn.LSTM)
def lstm(b: Builder, node: torch.fx.Node) -> Any:
    """LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False,
    proj_size=0) called as (input, hx=None); returns (output, (h_n, c_n))."""
    m: nn.LSTM = b.module(node)  # type: ignore[assignment]
    path = str(node.target)
    args, kwargs = b.args(node)
    if len(args) + len(kwargs) != 1 or not b.is_tensor(args[0] if args else next(iter(kwargs.values()))):
        raise b.fail("nn.LSTM is lowered when called on its input alone (zero initial state); an hx argument is not supported")
    if m.proj_size:
        raise b.fail("nn.LSTM with proj_size is not supported")
    x = args[0] if args else next(iter(kwargs.values()))
    if len(b.value(x).shape) != 3:
        raise b.fail(f"nn.LSTM is lowered for a batched 3-d input, got shape {list(b.value(x).shape)}")
    if not m.batch_first:  # [T, B, I] -> [B, T, I]
        x = b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=(1, 0, 2)), name=_part(b, node, "batch_first"), source=path)
    hidden = m.hidden_size
    finals_h, finals_c = [], []
    for layer in range(m.num_layers):
        outs = []
        for reverse in ([False, True] if m.bidirectional else [False]):
            suffix = f"_l{layer}" + ("_reverse" if reverse else "")
            out, h, c = _direction(b, node, m, path, x, suffix, hidden, reverse)
            outs.append(out)
            finals_h.append(h)
            finals_c.append(c)
        x = outs[0] if len(outs) == 1 else b.emit(Op.CONCAT, outs, A.AxisAttrs(axis=2), name=_part(b, node, f"out_l{layer}"), source=path)
    out = x if m.batch_first else b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=(1, 0, 2)), source=path)
    if not _reads_state(node):  # no dead nodes for final states nobody reads
        return (out, (None, None))
    return (out, (_stack(b, node, finals_h, "h_n", path), _stack(b, node, finals_c, "c_n", path)))


def _reads_state(node: torch.fx.Node) -> bool:
    """Whether anything reads the (h_n, c_n) half of the LSTM's result."""
    return any(not (user.op == "call_function" and user.target is operator.getitem and user.args[1] == 0) for user in node.users)


def _stack(b: Builder, node: torch.fx.Node, states: list[str], tag: str, path: str) -> str:
    """[B, H] final states as torch's [layers * directions, B, H]."""
    rows = [reshape_to(b, s, (1, *b.value(s).shape), name=_part(b, node, f"{tag}{i}")) for i, s in enumerate(states)]
    return rows[0] if len(rows) == 1 else b.emit(Op.CONCAT, rows, A.AxisAttrs(axis=0), name=_part(b, node, tag), source=path)


def _direction(
    b: Builder, node: torch.fx.Node, m: nn.LSTM, path: str, x: str, suffix: str, hidden: int, reverse: bool
) -> tuple[str, str, str]:
    """One layer in one direction over `x` [B, T, I]: its output [B, T, H] and final h and c [B, H]."""
    batch, steps, _ = b.value(x).shape
    tag = suffix.lstrip("_")
    ih = {"weight": b.add_param(f"{path}.weight_ih{suffix}", getattr(m, f"weight_ih{suffix}"), "OI")}
    hh = {"weight": b.add_param(f"{path}.weight_hh{suffix}", getattr(m, f"weight_hh{suffix}"), "OI")}
    if m.bias:
        ih["bias"] = b.add_param(f"{path}.bias_ih{suffix}", getattr(m, f"bias_ih{suffix}"), "O")
        hh["bias"] = b.add_param(f"{path}.bias_hh{suffix}", getattr(m, f"bias_hh{suffix}"), "O")
    projected = b.emit(Op.LINEAR, [x], None, ih, name=_part(b, node, f"{tag}_input"), source=f"{path}.ih{suffix}")
    h = c = None
    outputs: dict[int, str] = {}
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        step = b.emit(Op.SLICE, [projected], A.SliceAttrs(axis=1, start=t, stop=t + 1, step=1), name=_part(b, node, f"{tag}_x{t}"))
        gates = reshape_to(b, step, (batch, 4 * hidden), name=_part(b, node, f"{tag}_gx{t}"))
        if h is not None:
            recurrent = b.emit(Op.LINEAR, [h], None, hh, name=_part(b, node, f"{tag}_hh{t}"), source=f"{path}.hh{suffix}")
            gates = b.emit(Op.ADD, [gates, recurrent], A.BinaryAttrs(), name=_part(b, node, f"{tag}_gates{t}"))
        elif "bias" in hh:  # zero initial state: its projection is bias_hh alone
            bias = b.emit(Op.CONSTANT, [], params={"value": hh["bias"]}, name=_part(b, node, f"{tag}_bias_hh"))
            gates = b.emit(Op.ADD, [gates, bias], A.BinaryAttrs(), name=_part(b, node, f"{tag}_gates{t}"))
        i, f, g, o = b.emit(Op.SPLIT, [gates], A.SplitAttrs(axis=1, sizes=(hidden,) * 4), outputs=4, name=_part(b, node, f"{tag}_ifgo{t}"))
        i = b.emit(Op.SIGMOID, [i], name=_part(b, node, f"{tag}_i{t}"))
        g = b.emit(Op.TANH, [g], name=_part(b, node, f"{tag}_g{t}"))
        o = b.emit(Op.SIGMOID, [o], name=_part(b, node, f"{tag}_o{t}"))
        update = b.emit(Op.MUL, [i, g], A.BinaryAttrs(), name=_part(b, node, f"{tag}_ig{t}"))
        if c is None:
            c = update
        else:
            f = b.emit(Op.SIGMOID, [f], name=_part(b, node, f"{tag}_f{t}"))
            kept = b.emit(Op.MUL, [f, c], A.BinaryAttrs(), name=_part(b, node, f"{tag}_fc{t}"))
            c = b.emit(Op.ADD, [kept, update], A.BinaryAttrs(), name=_part(b, node, f"{tag}_c{t}"))
        squashed = b.emit(Op.TANH, [c], name=_part(b, node, f"{tag}_tanh_c{t}"))
        h = b.emit(Op.MUL, [o, squashed], A.BinaryAttrs(), name=_part(b, node, f"{tag}_h{t}"))
        outputs[t] = reshape_to(b, h, (batch, 1, hidden), name=_part(b, node, f"{tag}_y{t}"))
    rows = [outputs[t] for t in range(steps)]
    out = rows[0] if len(rows) == 1 else b.emit(Op.CONCAT, rows, A.AxisAttrs(axis=1), name=_part(b, node, f"{tag}_out"), source=path)
    return out, h, c  # type: ignore[return-value]
