"""Hypothesis strategies for the bug classes of issue 13: small straight-line programs over named
tensors, drawn so that each one exercises a construct the reviewers broke the loop with.

A `Program` is a printable recipe (frozen dataclasses, like `strategies.Arch`): its `repr` is a Python
expression over this module's names, so a failing example is rebuilt with `build_program(eval(text))`.
Its forward pass executes the steps in order on an environment of named tensors, so in-place ops
mutate the tensor a name is bound to (and every alias of it), exactly as hand-written PyTorch would.

Every program starts with a stem conv from the graph input `x` to `y` (the input itself is never
mutated: the reference and the generated model run on the same input tensors) and, unless a head
replaces it, ends in a 1x1 conv over the last value so the groups before it have a consumer to prune.

Strategies (one per issue-13 class; each can also draw plain programs that the library must handle):
- `inplace_programs`: add_/sub_/mul_/relu_/sigmoid_/clamp_, `+=`, `*=`, `nn.ReLU(inplace=True)` and
  `F.relu(inplace=True)` on tensors that are used again, results bound to a second name (aliases) or dropped;
- `shared_weight_programs`: one conv weight in `F.conv2d` at several dilations/paddings (TridentNet), a
  conv module called on two branches, the trunk-and-branch sharing of finding 8;
- `padding_programs`: zeros/reflect/replicate/circular padding, even and odd kernels, padding="same",
  dilation, valid convs, residuals around "same" convs; avg pools with count_include_pad/divisor_override
  and transposed convs with dilation and output_padding (arguments a converter must honour or refuse);
- `frozen_programs`: frozen convs (`requires_grad_(False)`, with bias), BatchNorm with affine=False or frozen
  affine params, constant-valued F.pad, in residual branches that erase mode may offer;
- `channel_sum_programs`: sigmoid / elu+1 / exp / tanh / +c (and zero-preserving relu, identity for contrast)
  before attention-style matmuls that sum over channels and channel sum/mean reductions (CBAM, RMS norm);
- `division_programs`: division by per-channel params, negative powers of params and of activations;
- `broadcast_programs`: [N,C,1,1] pooled tensors and [N,1,H,W] channel reductions broadcast into [N,C,H,W];
  strided channel slices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

# ------------------------------------------------------------------------------------------ recipe


@dataclass(frozen=True)
class ConvM:
    """An `nn.Conv2d`; `padding` is an int or "same"; `frozen` sets requires_grad_(False) on its params."""

    cin: int
    cout: int
    kernel: int = 3
    padding: int | str = 1
    dilation: int = 1
    stride: int = 1
    padding_mode: str = "zeros"
    bias: bool = True
    frozen: bool = False


@dataclass(frozen=True)
class ConvTM:
    """An `nn.ConvTranspose2d`; torch needs output_padding < max(stride, dilation)."""

    cin: int
    cout: int
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    dilation: int = 1
    bias: bool = True


@dataclass(frozen=True)
class BNM:
    """An `nn.BatchNorm2d`; `frozen` freezes its affine params (when it has them)."""

    channels: int
    affine: bool = True
    frozen: bool = False


@dataclass(frozen=True)
class ActM:
    """An activation module, e.g. `nn.ReLU(inplace=True)`."""

    kind: str
    inplace: bool = False


@dataclass(frozen=True)
class LinearM:
    cin: int
    cout: int


@dataclass(frozen=True)
class Call:
    """env[dst] = modules[mod](env[src])."""

    dst: str
    src: str
    mod: str


@dataclass(frozen=True)
class FConv:
    """env[dst] = F.conv2d(env[src], modules[mod].weight, modules[mod].bias, padding=..., dilation=...)."""

    dst: str
    src: str
    mod: str
    padding: int
    dilation: int


@dataclass(frozen=True)
class Fn:
    """env[dst] = UNARY[fn](env[src]) (a fresh tensor)."""

    dst: str
    src: str
    fn: str


@dataclass(frozen=True)
class Bin:
    """env[dst] = env[a] <op> env[b] with broadcasting; op in add, sub, mul, div."""

    dst: str
    a: str
    b: str
    op: str


@dataclass(frozen=True)
class InPlace:
    """Mutate env[var] in place with `op` (and `other`: a value name or a float); when `dst` is given the
    op's return value (the same tensor) is bound to it too, so both names alias one tensor."""

    var: str
    op: str
    other: str | float | None = None
    dst: str | None = None


@dataclass(frozen=True)
class Param:
    """env[dst] = env[src] <op> params[param] (per-channel, shape (C,) viewed as (1, C, 1, 1));
    op 'div' (x / p), 'mul_pow' (x * p ** -1), 'mul_recip' (x * reciprocal(p)), 'mul_rsqrt' (x * rsqrt(p))."""

    dst: str
    src: str
    param: str
    op: str


@dataclass(frozen=True)
class Pool:
    """env[dst] = a global average of env[src] to [N, C, 1, 1]; how: 'adaptive', 'mean' or 'functional'."""

    dst: str
    src: str
    how: str = "adaptive"


@dataclass(frozen=True)
class Reduce:
    """env[dst] = env[src].<kind>(dim=1, keepdim=True): a channel sum or mean to [N, 1, H, W]."""

    dst: str
    src: str
    kind: str


@dataclass(frozen=True)
class Attn:
    """Attention that sums over channels. q, k, v are [N, C, H, W] maps flattened to [N, C, HW].
    form 'scores': s = phi(q)^T @ phi(k) / HW ([N, HW, HW], a sum over C), out = v @ s^T;
    form 'linear': out = (phi(k) @ v^T / HW)^T @ phi(q) ([N, Cv, HW], a sum over C of q and k).
    The result is reshaped back to [N, Cv, H, W]."""

    dst: str
    q: str
    k: str
    v: str
    phi: str
    form: str


@dataclass(frozen=True)
class Pad:
    """env[dst] = F.pad(env[src], (p, p, p, p), value=value)."""

    dst: str
    src: str
    pad: int
    value: float


@dataclass(frozen=True)
class AvgPool:
    """env[dst] = F.avg_pool2d(env[src], 3, 1, 1, count_include_pad=..., divisor_override=...): keeps the size."""

    dst: str
    src: str
    count_include_pad: bool = True
    divisor_override: int | None = None


@dataclass(frozen=True)
class Slice:
    """env[dst] = env[src][:, start::step] (a strided channel slice)."""

    dst: str
    src: str
    start: int
    step: int


@dataclass(frozen=True)
class Head:
    """env[dst] = modules[mod](flatten(adaptive_avg_pool(env[src], 1))): a classifier head."""

    dst: str
    src: str
    mod: str


@dataclass(frozen=True)
class Program:
    in_channels: int
    size: int
    modules: tuple[tuple[str, object], ...]
    steps: tuple
    outputs: tuple[str, ...]
    params: tuple[tuple[str, int], ...] = ()
    batch: int = 2

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, self.size, self.size)


def _elu1(t: torch.Tensor) -> torch.Tensor:
    return F.elu(t) + 1.0


UNARY = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "elu1": _elu1,
    "exp": torch.exp,
    "addc": lambda t: t + 0.5,
    "identity": lambda t: t,
    "square": lambda t: t * t,
    "pow_neg1": lambda t: t.pow(-1),
    "pow_neg2": lambda t: t ** -2,
    "pow_neg_half": lambda t: t.pow(-0.5),
    "rdiv": lambda t: 1.0 / t,
    "softplus_addc": lambda t: F.softplus(t) + 0.5,
    "reciprocal": torch.reciprocal,
    "rsqrt": torch.rsqrt,
    "abs_addc": lambda t: t.abs() + 1.0,
    "tiny": lambda t: t * 0.005,
}

ACT_MODULES = {"relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "hardswish": nn.Hardswish,
               "silu": nn.SiLU}


def _module(spec: object) -> nn.Module:
    if isinstance(spec, ConvM):
        conv = nn.Conv2d(spec.cin, spec.cout, spec.kernel, spec.stride, spec.padding, spec.dilation,
                         bias=spec.bias, padding_mode=spec.padding_mode)
        if spec.frozen:
            conv.requires_grad_(False)
        return conv
    if isinstance(spec, ConvTM):
        return nn.ConvTranspose2d(spec.cin, spec.cout, spec.kernel, spec.stride, spec.padding, spec.output_padding,
                                  bias=spec.bias, dilation=spec.dilation)
    if isinstance(spec, BNM):
        bn = nn.BatchNorm2d(spec.channels, affine=spec.affine)
        if spec.frozen:
            bn.requires_grad_(False)
        return bn
    if isinstance(spec, ActM):
        return ACT_MODULES[spec.kind](inplace=spec.inplace)
    if isinstance(spec, LinearM):
        return nn.Linear(spec.cin, spec.cout)
    raise TypeError(f"unknown module description {spec!r}")


class ProgramNet(nn.Module):
    """The network a `Program` describes; fx traces through the interpreter loop (it is static)."""

    def __init__(self, program: Program) -> None:
        super().__init__()
        self.program = program
        self.mods = nn.ModuleDict({name: _module(spec) for name, spec in program.modules})
        self.scales = nn.ParameterDict({name: nn.Parameter(torch.ones(c)) for name, c in program.params})

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        env = {"x": x}
        for step in self.program.steps:
            self._run(step, env)
        outs = tuple(env[name] for name in self.program.outputs)
        return outs[0] if len(outs) == 1 else outs

    def _run(self, step: object, env: dict[str, torch.Tensor]) -> None:  # noqa: C901 - one branch per step kind
        if isinstance(step, Call):
            env[step.dst] = self.mods[step.mod](env[step.src])
        elif isinstance(step, FConv):
            conv = self.mods[step.mod]
            env[step.dst] = F.conv2d(env[step.src], conv.weight, conv.bias, padding=step.padding, dilation=step.dilation)
        elif isinstance(step, Fn):
            env[step.dst] = UNARY[step.fn](env[step.src])
        elif isinstance(step, Bin):
            a, b = env[step.a], env[step.b]
            env[step.dst] = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[step.op](a, b)
        elif isinstance(step, InPlace):
            result = _inplace(env, step)
            if step.dst is not None:
                env[step.dst] = result
        elif isinstance(step, Param):
            p = self.scales[step.param].view(1, -1, 1, 1)
            t = env[step.src]
            env[step.dst] = {
                "div": lambda: t / p,
                "mul_pow": lambda: t * p.pow(-1),
                "mul_recip": lambda: t * torch.reciprocal(p),
                "mul_rsqrt": lambda: t * torch.rsqrt(p),
            }[step.op]()
        elif isinstance(step, Pool):
            t = env[step.src]
            if step.how == "adaptive":
                env[step.dst] = F.adaptive_avg_pool2d(t, 1)
            elif step.how == "mean":
                env[step.dst] = t.mean((2, 3), keepdim=True)
            else:
                env[step.dst] = F.avg_pool2d(t, self.program.size)  # the map is still full size here
        elif isinstance(step, Reduce):
            t = env[step.src]
            env[step.dst] = t.sum(1, keepdim=True) if step.kind == "sum" else t.mean(1, keepdim=True)
        elif isinstance(step, Attn):
            env[step.dst] = _attention(env[step.q], env[step.k], env[step.v], step)
        elif isinstance(step, Pad):
            p = step.pad
            env[step.dst] = F.pad(env[step.src], (p, p, p, p), value=step.value)
        elif isinstance(step, AvgPool):
            env[step.dst] = F.avg_pool2d(env[step.src], 3, 1, 1, count_include_pad=step.count_include_pad,
                                         divisor_override=step.divisor_override)
        elif isinstance(step, Slice):
            env[step.dst] = env[step.src][:, step.start::step.step]
        elif isinstance(step, Head):
            env[step.dst] = self.mods[step.mod](torch.flatten(F.adaptive_avg_pool2d(env[step.src], 1), 1))
        else:
            raise TypeError(f"unknown step {step!r}")


def _inplace(env: dict[str, torch.Tensor], step: InPlace) -> torch.Tensor:
    t = env[step.var]
    other = env[step.other] if isinstance(step.other, str) else step.other
    op = step.op
    if op == "add_":
        return t.add_(other)
    if op == "sub_":
        return t.sub_(other)
    if op == "mul_":
        return t.mul_(other)
    if op == "iadd":
        t += other
        return t
    if op == "imul":
        t *= other
        return t
    if op == "relu_":
        return t.relu_()
    if op == "torch.relu_":
        return torch.relu_(t)
    if op == "F.relu_inplace":
        return F.relu(t, inplace=True)
    if op == "sigmoid_":
        return t.sigmoid_()
    if op == "clamp_":
        return t.clamp_(min=0.0)
    raise ValueError(f"unknown in-place op {op}")


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, step: Attn) -> torch.Tensor:
    n, cv, h, w = v.shape
    phi = UNARY[step.phi]
    q = phi(q.flatten(2))
    k = phi(k.flatten(2))
    v = v.flatten(2)
    hw = h * w
    if step.form == "scores":
        scores = torch.matmul(q.transpose(1, 2), k) / hw
        out = torch.matmul(v, scores.transpose(1, 2))
    else:
        kv = torch.matmul(k, v.transpose(1, 2)) / hw
        out = torch.matmul(kv.transpose(1, 2), q)
    return out.reshape(n, cv, h, w)


def build_program(program: Program, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The eval-mode model for `program`, initialised from `seed`, in `dtype`."""
    torch.manual_seed(seed)
    return ProgramNet(program).eval().to(dtype)


def program_input(program: Program, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(program.input_shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# ------------------------------------------------------------------------------------ drawing helper


@dataclass
class _Draft:
    """A program under construction: fresh names, module specs, per-value channel counts."""

    in_channels: int
    size: int
    modules: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    params: list = field(default_factory=list)
    channels: dict = field(default_factory=dict)
    counter: int = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def module(self, prefix: str, spec: object) -> str:
        name = self.fresh(prefix)
        self.modules.append((name, spec))
        return name

    def conv(self, src: str, cout: int, **kwargs: object) -> str:
        """A conv module on `src` (default 3x3, padding 1) and the value it produces."""
        mod = self.module("conv", ConvM(self.channels[src], cout, **kwargs))
        return self.call(src, mod, cout)

    def call(self, src: str, mod: str, cout: int, prefix: str = "v") -> str:
        dst = self.fresh(prefix)
        self.steps.append(Call(dst, src, mod))
        self.channels[dst] = cout
        return dst

    def add(self, step: object, dst: str | None, channels: int | None) -> str | None:
        self.steps.append(step)
        if dst is not None and channels is not None:
            self.channels[dst] = channels
        return dst

    def finish(self, last: str, draw: st.DrawFn, *, skip: str | None = None, extra_output: str | None = None) -> Program:
        """End in a 1x1 conv (and sometimes a Linear head) over `last`; `extra_output` becomes a second
        output (so each output is held to its own reference scale). With `skip` (a value of the same
        spatial size as `last`), sometimes join skip + conv1x1(last) first: the motif then sits in a
        residual branch, a removal structure that erase mode may offer."""
        if skip is not None and draw(st.booleans()):
            branch = self.conv(last, self.channels[skip], kernel=1, padding=0, bias=draw(st.booleans()))
            joined = self.fresh("v")
            self.add(Bin(joined, skip, branch, "add"), joined, self.channels[skip])
            last = joined
        out = self.conv(last, draw(st.sampled_from([2, 3, 5])), kernel=1, padding=0)
        if draw(st.booleans()):
            head = self.module("fc", LinearM(self.channels[out], draw(st.integers(1, 4))))
            dst = self.fresh("logits")
            self.steps.append(Head(dst, out, head))
            out = dst
        outputs = (out,) if extra_output is None else (out, extra_output)
        return Program(self.in_channels, self.size, tuple(self.modules), tuple(self.steps), outputs, tuple(self.params))


_WIDTH = st.sampled_from([2, 3, 4, 6])


@st.composite
def _stem(draw: st.DrawFn, size: int | None = None) -> tuple[_Draft, str]:
    """A draft with the stem conv x -> y (and sometimes an activation after it)."""
    draft = _Draft(draw(st.integers(1, 3)), size if size is not None else draw(st.sampled_from([4, 6])))
    draft.channels["x"] = draft.in_channels
    y = draft.conv("x", draw(_WIDTH), bias=draw(st.booleans()))
    if draw(st.booleans()):
        act = draft.fresh("v")
        draft.add(Fn(act, y, draw(st.sampled_from(["relu", "tanh", "sigmoid"]))), act, draft.channels[y])
        y = act
    return draft, y


def _maybe_extra(draw: st.DrawFn, draft: _Draft) -> str | None:
    """Sometimes a second output: a value from the middle of the program, scaled by 0.005, so a wrong
    small output cannot hide under a large one."""
    if draw(st.integers(0, 3)) != 0:
        return None
    candidates = [name for name in draft.channels if name != "x"]
    dst = draft.fresh("aux")
    draft.add(Fn(dst, draw(st.sampled_from(candidates)), "tiny"), None, None)
    return dst


# ------------------------------------------------------------------------------------- strategies

INPLACE_OPS = ("add_", "sub_", "mul_", "iadd", "imul", "relu_", "torch.relu_", "F.relu_inplace", "sigmoid_", "clamp_")


@st.composite
def inplace_programs(draw: st.DrawFn) -> Program:
    """Convs and in-place ops over a pool of same-shaped values; mutated values stay in use (a value read
    before and after its mutation, aliases bound by `dst`, results dropped), and the last value is the
    sum of every live value so each mutation reaches the output."""
    draft, y = draw(_stem())
    c = draft.channels[y]
    live = [y]
    # alias name -> the name of the tensor it is bound to: `a - a` (through any alias) is identically
    # zero and would make the output input-independent, which check rightly calls degenerate
    root: dict[str, str] = {y: y}
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "conv", "inplace", "inplace", "inplace", "relu_module", "binary", "residual"]))
        if kind == "conv":
            live.append(draft.conv(draw(st.sampled_from(live)), c, kernel=draw(st.sampled_from([1, 3])),
                                   padding="same", bias=draw(st.booleans())))
            root[live[-1]] = live[-1]
        elif kind == "residual":
            # finding 1: out = c2(relu(c1(x))); out.add_(x); relu(out)
            src = draw(st.sampled_from(live))
            t = draft.conv(src, c)
            u = draft.fresh("v")
            draft.add(Fn(u, t, "relu"), u, c)
            out = draft.conv(u, c)
            draft.add(InPlace(out, draw(st.sampled_from(["add_", "iadd"])), src), None, None)
            draft.add(InPlace(out, draw(st.sampled_from(["relu_", "F.relu_inplace", "torch.relu_"]))), None, None)
            live.append(out)
            root[out] = out
        elif kind == "relu_module":
            # nn.ReLU(inplace=True) on a value that is used again afterwards
            src = draw(st.sampled_from(live))
            mod = draft.module("act", ActM(draw(st.sampled_from(["relu", "relu6", "leaky_relu", "elu", "hardswish", "silu"])), True))
            out = draft.call(src, mod, c)
            live.append(out)
            root[out] = root[src]  # an in-place module returns its input tensor
        elif kind == "binary":
            a, b = draw(st.sampled_from(live)), draw(st.sampled_from(live))
            ops = ["add", "mul"] if root[a] == root[b] else ["add", "mul", "sub"]
            dst = draft.fresh("v")
            draft.add(Bin(dst, a, b, draw(st.sampled_from(ops))), dst, c)
            live.append(dst)
            root[dst] = dst
        else:
            var = draw(st.sampled_from(live))
            op = draw(st.sampled_from(INPLACE_OPS))
            other: str | float | None = None
            if op in ("add_", "sub_", "iadd", "imul", "mul_"):
                other = draw(st.one_of(st.sampled_from(live), st.sampled_from([0.5, 2.0, -1.5])))
                if op == "imul" and isinstance(other, str) and draw(st.booleans()):
                    other = 2.0
                if op == "sub_" and isinstance(other, str) and root[other] == root[var]:
                    other = 0.5
            alias = draft.fresh("v") if draw(st.booleans()) else None
            draft.add(InPlace(var, op, other, alias), alias, c)
            if alias is not None:
                live.append(alias)
                root[alias] = root[var]
    total = live[0]
    for value in live[1:]:
        dst = draft.fresh("v")
        draft.add(Bin(dst, total, value, "add"), dst, c)
        total = dst
    return draft.finish(total, draw, skip=y, extra_output=_maybe_extra(draw, draft))


@st.composite
def shared_weight_programs(draw: st.DrawFn) -> Program:
    """One weight, several settings: TridentNet-style F.conv2d of one conv's weight at 2-3 dilations
    (each with the padding that keeps the size), optionally also called as the module; or one conv
    module called on two branches, including finding 8's trunk-and-branch sharing."""
    draft, y = draw(_stem(size=draw(st.sampled_from([6, 8]))))
    c = draft.channels[y]
    kind = draw(st.sampled_from(["trident", "trident", "two_branches", "trunk_and_branch"]))
    if kind == "trident":
        kernel = draw(st.sampled_from([1, 3]))
        cout = draw(_WIDTH)
        dilations = draw(st.lists(st.sampled_from([1, 2, 3]), min_size=2, max_size=3, unique=True))
        mod = draft.module("conv", ConvM(c, cout, kernel, dilations[0] * (kernel - 1) // 2, dilations[0],
                                         bias=draw(st.booleans())))
        outs = []
        for i, d in enumerate(dilations):
            if i == 0 and draw(st.booleans()):
                outs.append(draft.call(y, mod, cout))
            else:
                dst = draft.fresh("v")
                draft.add(FConv(dst, y, mod, d * (kernel - 1) // 2, d), dst, cout)
                outs.append(dst)
        total = outs[0]
        for value in outs[1:]:
            dst = draft.fresh("v")
            draft.add(Bin(dst, total, value, "add"), dst, cout)
            total = dst
        return draft.finish(total, draw, skip=y)
    shared = draft.module("shared", ConvM(c, c, draw(st.sampled_from([1, 3])), "same", bias=draw(st.booleans())))
    if kind == "trunk_and_branch":
        # finding 8: y = relu(shared(y0)); out = head(y + shared(y))
        t = draft.call(y, shared, c)
        r = draft.fresh("v")
        draft.add(Fn(r, t, draw(st.sampled_from(["relu", "tanh"]))), r, c)
        b = draft.call(r, shared, c)
        dst = draft.fresh("v")
        draft.add(Bin(dst, r, b, "add"), dst, c)
        return draft.finish(dst, draw, skip=y)
    # two branches through the same module, joined by add or mul, maybe with a private branch too
    a_in = draft.conv(y, c) if draw(st.booleans()) else y
    b_in = draft.conv(y, c, kernel=1, padding=0)
    a = draft.call(a_in, shared, c)
    b = draft.call(b_in, shared, c)
    dst = draft.fresh("v")
    draft.add(Bin(dst, a, b, draw(st.sampled_from(["add", "add", "mul"]))), dst, c)
    if draw(st.booleans()):
        private = draft.conv(y, c)
        joined = draft.fresh("v")
        draft.add(Bin(joined, dst, private, "add"), joined, c)
        dst = joined
    return draft.finish(dst, draw, skip=y)


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@st.composite
def padding_programs(draw: st.DrawFn) -> Program:
    """Convs with every padding mode, even and odd kernels, padding="same" (stride 1) or an explicit
    padding (valid convs shrink the map), dilation 1-2; sometimes a residual around a "same" conv."""
    draft, y = draw(_stem(size=draw(st.sampled_from([6, 8]))))
    size = draft.size
    last = y
    for _ in range(draw(st.integers(1, 3))):
        c = draft.channels[last]
        layer = draw(st.sampled_from(["conv", "conv", "conv", "pool", "transpose"]))
        if layer == "pool":
            # finding 4: arguments a converter must honour or refuse
            dst = draft.fresh("v")
            # (divisor_override replaces the divisor, so count_include_pad=False adds nothing to it)
            override = draw(st.sampled_from([None, None, 1, 4]))
            include = draw(st.booleans()) if override is None else True
            draft.add(AvgPool(dst, last, include, override), dst, c)
            last = dst
            continue
        if layer == "transpose":
            # finding 12: ConvTranspose2d with dilation and output_padding
            kernel, stride, dilation = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))
            padding = draw(st.integers(0, dilation * (kernel - 1) // 2))
            output_padding = draw(st.integers(0, max(stride, dilation) - 1))
            out_size = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
            if not 2 <= out_size <= 12:
                continue
            cout = draw(_WIDTH)
            mod = draft.module("convt", ConvTM(c, cout, kernel, stride, padding, output_padding, dilation, draw(st.booleans())))
            last = draft.call(last, mod, cout)
            size = out_size
            continue
        kernel = draw(st.sampled_from([1, 2, 3, 4, 5]))
        dilation = draw(st.sampled_from([1, 1, 2]))
        reach = dilation * (kernel - 1)
        mode = draw(st.sampled_from(PADDING_MODES))
        same = draw(st.booleans())
        if same:
            # reflect, replicate and circular need each side's padding below the map size
            if (reach + 1) // 2 >= size:
                mode = "zeros"
            padding: int | str = "same"
            out_size = size
        else:
            padding = draw(st.integers(0, reach if mode == "zeros" else min(reach, size - 1)))
            out_size = size + 2 * padding - reach
            if out_size < 2:
                continue
        cout = draw(_WIDTH)
        residual = same and draw(st.integers(0, 2)) == 0
        conv = draft.conv(last, c if residual else cout, kernel=kernel, padding=padding, dilation=dilation,
                          padding_mode=mode, bias=draw(st.booleans()))
        if residual:
            dst = draft.fresh("v")
            draft.add(Bin(dst, last, conv, "add"), dst, c)
            conv = dst
        size = out_size
        last = conv
    return draft.finish(last, draw, skip=y if size == draft.size else None)


@st.composite
def frozen_programs(draw: st.DrawFn) -> Program:
    """Residual branches y + branch(y) whose branch holds frozen or statistic-only parts: a frozen conv
    with bias, BatchNorm(affine=False), a frozen BatchNorm, a constant-valued pad around a valid conv."""
    draft, y = draw(_stem())
    c = draft.channels[y]
    last = y
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["bn", "pad", "frozen_conv", "chain"]))
        if kind == "pad":
            t = draft.conv(last, c, padding=0, frozen=draw(st.booleans()))
            branch = draft.fresh("v")
            draft.add(Pad(branch, t, 1, draw(st.sampled_from([0.0, 1.0, -0.5]))), branch, c)
        else:
            frozen = True if kind == "frozen_conv" else kind == "chain" and draw(st.booleans())
            branch = draft.conv(last, c, kernel=draw(st.sampled_from([1, 3])), padding="same", bias=draw(st.booleans()),
                                frozen=frozen)
            if kind in ("bn", "chain"):
                affine = draw(st.booleans())
                bn = draft.module("bn", BNM(c, affine=affine, frozen=affine and draw(st.booleans())))
                branch = draft.call(branch, bn, c)
            if kind == "chain" and draw(st.booleans()):
                act = draft.fresh("v")
                draft.add(Fn(act, branch, "relu"), act, c)
                branch = draft.conv(act, c, kernel=1, padding=0, frozen=draw(st.booleans()))
        dst = draft.fresh("v")
        draft.add(Bin(dst, last, branch, "add"), dst, c)
        last = dst
    return draft.finish(last, draw, skip=y)


NON_ZERO_PRESERVING = ("sigmoid", "elu1", "exp", "addc")
PHIS = (*NON_ZERO_PRESERVING, "tanh", "relu", "identity")


@st.composite
def channel_sum_programs(draw: st.DrawFn) -> Program:
    """Non-zero-preserving maps (sigmoid, elu+1, exp, +c) and zero-preserving ones before ops that sum
    over channels: attention scores and linear attention (matmuls of two activations), channel sum/mean
    gates (CBAM-style spatial attention), RMS normalisation over channels."""
    draft, y = draw(_stem())
    c = draft.channels[y]
    kind = draw(st.sampled_from(["scores", "linear", "reduce_gate", "reduce_add", "rms"]))
    phi = draw(st.sampled_from(PHIS))
    if kind in ("scores", "linear"):
        ck = draw(_WIDTH)
        q, k = draft.conv(y, ck, kernel=1, padding=0), draft.conv(y, ck, kernel=1, padding=0)
        v = draft.conv(y, draw(_WIDTH), kernel=1, padding=0)
        dst = draft.fresh("v")
        draft.add(Attn(dst, q, k, v, phi, kind), dst, draft.channels[v])
        return draft.finish(dst, draw, skip=y, extra_output=_maybe_extra(draw, draft))
    if kind == "rms":
        # y * rsqrt(mean_c(y^2) + eps): the channel mean changes when a channel is sliced away
        sq = draft.fresh("v")
        draft.add(Fn(sq, y, "square"), sq, c)
        mean = draft.fresh("v")
        draft.add(Reduce(mean, sq, "mean"), mean, 1)
        eps = draft.fresh("v")
        draft.add(Fn(eps, mean, "addc"), eps, 1)
        inv = draft.fresh("v")
        draft.add(Fn(inv, eps, draw(st.sampled_from(["pow_neg_half", "pow_neg_half", "rsqrt"]))), inv, 1)
        dst = draft.fresh("v")
        draft.add(Bin(dst, y, inv, "mul"), dst, c)
        return draft.finish(dst, draw, skip=y)
    t = draft.conv(y, draw(_WIDTH))
    mapped = draft.fresh("v")
    draft.add(Fn(mapped, t, phi), mapped, draft.channels[t])
    red = draft.fresh("v")
    draft.add(Reduce(red, mapped, draw(st.sampled_from(["sum", "mean"]))), red, 1)
    body = draft.conv(y, draw(_WIDTH))
    dst = draft.fresh("v")
    draft.add(Bin(dst, body, red, "mul" if kind == "reduce_gate" else "add"), dst, draft.channels[body])
    return draft.finish(dst, draw, skip=y, extra_output=_maybe_extra(draw, draft))


@st.composite
def division_programs(draw: st.DrawFn) -> Program:
    """Division by per-channel params (and their negative powers), and negative powers of activations:
    of sigmoid/exp/softplus+c outputs (bounded away from zero), and of the stem conv's own output (its
    input, the graph input, is never sliced, so its values are computed identically on both sides).
    reciprocal, rsqrt and abs are drawn less often: the fx frontend refuses them today, which is
    allowed, but a refused model exercises nothing else."""
    draft, y = draw(_stem())
    c = draft.channels[y]
    kind = draw(st.sampled_from(["param", "param", "activation", "stem_power", "ratio"]))
    if kind == "stem_power":
        y = draft.steps[0].dst  # the stem conv's raw output
        dst = draft.fresh("v")
        draft.add(Fn(dst, y, draw(st.sampled_from(["pow_neg1", "pow_neg1", "rdiv", "rdiv", "reciprocal"]))), dst, c)
        return draft.finish(dst, draw, skip=y)
    t = draft.conv(y, draw(_WIDTH))
    ct = draft.channels[t]
    dst = draft.fresh("v")
    if kind == "param":
        name = draft.fresh("scale")
        draft.params.append((name, ct))
        draft.add(Param(dst, t, name, draw(st.sampled_from([*["div", "mul_pow"] * 3, "mul_recip", "mul_rsqrt"]))), dst, ct)
    elif kind == "activation":
        bounded = draft.fresh("v")
        draft.add(Fn(bounded, t, draw(st.sampled_from(["sigmoid", "exp", "softplus_addc"]))), bounded, ct)
        draft.add(Fn(dst, bounded, draw(st.sampled_from([*["pow_neg1", "pow_neg2", "pow_neg_half", "rdiv"] * 2, "reciprocal", "rsqrt"]))),
                  dst, ct)
    else:
        den = draft.conv(y, ct)
        bounded = draft.fresh("v")
        draft.add(Fn(bounded, den, draw(st.sampled_from([*["sigmoid", "exp", "softplus_addc"] * 2, "abs_addc"]))), bounded, ct)
        draft.add(Bin(dst, t, bounded, "div"), dst, ct)
    return draft.finish(dst, draw, skip=y)


@st.composite
def broadcast_programs(draw: st.DrawFn) -> Program:
    """A pooled [N, C, 1, 1] value (adaptive pool, mean over H and W, or a full-size avg_pool) or a channel
    reduction [N, 1, H, W] combined with a full map by add/sub/mul, in either operand order; finding
    12's head(gap(y) + c1(y)) is one draw."""
    draft, y = draw(_stem())
    c = draft.channels[y]
    if draw(st.integers(0, 4)) == 0:
        # finding 10: a strided channel slice a(x)[:, start::step] feeding a conv
        wide = draft.conv(y, draw(st.sampled_from([4, 6, 8])))
        start, step = draw(st.integers(0, 1)), draw(st.sampled_from([1, 2, 3]))
        sliced = draft.fresh("v")
        draft.add(Slice(sliced, wide, start, step), sliced, len(range(start, draft.channels[wide], step)))
        return draft.finish(draft.conv(sliced, c), draw, skip=y)
    src = y if draw(st.booleans()) else draft.conv(y, c)
    small = draft.fresh("v")
    if draw(st.integers(0, 3)) == 0:
        draft.add(Reduce(small, src, draw(st.sampled_from(["sum", "mean"]))), small, 1)
    else:
        draft.add(Pool(small, src, draw(st.sampled_from(["adaptive", "mean", "functional"]))), small, c)
        if draw(st.booleans()):
            small = draft.conv(small, c, kernel=1, padding=0)
    full = draft.conv(y, c, kernel=draw(st.sampled_from([1, 3])), padding="same")
    a, b = (small, full) if draw(st.booleans()) else (full, small)
    dst = draft.fresh("v")
    draft.add(Bin(dst, a, b, draw(st.sampled_from(["add", "add", "sub", "mul"]))), dst, c)
    return draft.finish(dst, draw, skip=y)


STRATEGIES = {
    "inplace": inplace_programs,
    "shared_weight": shared_weight_programs,
    "padding": padding_programs,
    "frozen": frozen_programs,
    "channel_sum": channel_sum_programs,
    "division": division_programs,
    "broadcast": broadcast_programs,
}
