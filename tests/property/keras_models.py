"""Random small Keras 3 functional models (channels-last) for the Keras review's classes (issue 14):
nested sub-models whose inner layers share names (optionally through `clone_model`), subclasses of
Conv2D/Dense, `Embedding(mask_zero=True)` with and without a mask consumer, frozen layers in residual
branches, dict inputs and outputs, and per-layer dtype policies.

A strategy draws a frozen dataclass (its repr is the whole description); `build_keras(case, seed)`
rebuilds the model and its example inputs from it, so a failure prints what to paste into a repro.
Every model has residual adds or channel concats, so erase mode has operators to remove.

A case whose `refusal` is set must be refused up front by `ai.check` with asgnas-ir's own error, and the
message must match that pattern (the layer's name and the reason); the others must check.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from keras import layers as L  # noqa: E402

Built = tuple[keras.Model, Any]
WIDTHS = st.integers(2, 5)
SIDE = 5  # image side: tiny, TensorFlow's per-op overhead dominates anyway


def _floats(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# ---- layer subclasses (module level, so that a Keras config and a repr can name them) -------------------
# registered, as a user who saves such a model does: checking.py deep-copies the model to re-compile it,
# and a Keras deepcopy goes through get_config / from_config


@keras.saving.register_keras_serializable(package="asgnas_fuzz")
class TaggedConv2D(L.Conv2D):
    """Only configures: its own `__init__` argument and config entry; computes exactly a Conv2D."""

    def __init__(self, filters: int, kernel_size: Any, tag: str = "", **kwargs: Any) -> None:
        super().__init__(filters, kernel_size, **kwargs)
        self.tag = tag

    def get_config(self) -> dict:
        return {**super().get_config(), "tag": self.tag}


@keras.saving.register_keras_serializable(package="asgnas_fuzz")
class TaggedDense(L.Dense):
    def __init__(self, units: int, tag: str = "", **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.tag = tag

    def get_config(self) -> dict:
        return {**super().get_config(), "tag": self.tag}


@keras.saving.register_keras_serializable(package="asgnas_fuzz")
class StandardizedConv2D(L.Conv2D):
    """The keras.io weight-standardised conv: computes something else than the kernel it holds."""

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        mean, var = keras.ops.moments(kernel, axes=[0, 1, 2], keepdims=True)
        return super().convolution_op(inputs, (kernel - mean) / keras.ops.sqrt(var + 1e-5))


@keras.saving.register_keras_serializable(package="asgnas_fuzz")
class DoubledConv2D(L.Conv2D):
    def call(self, inputs: Any) -> Any:
        return super().call(inputs) * 2.0


@keras.saving.register_keras_serializable(package="asgnas_fuzz")
class ShiftedDense(L.Dense):
    def call(self, inputs: Any, training: Any = None) -> Any:
        return super().call(inputs) + 0.5


CONV_CLASSES: dict[str, type] = {"Conv2D": L.Conv2D, "TaggedConv2D": TaggedConv2D,
                                 "StandardizedConv2D": StandardizedConv2D, "DoubledConv2D": DoubledConv2D}
DENSE_CLASSES: dict[str, type] = {"Dense": L.Dense, "TaggedDense": TaggedDense, "ShiftedDense": ShiftedDense}
# which classes change the computation, and the method whose override does it
OVERRIDES = {"StandardizedConv2D": "convolution_op", "DoubledConv2D": "call", "ShiftedDense": "call"}


def _conv(cls: str, filters: int, name: str, **kwargs: Any) -> L.Layer:
    if cls.startswith("Tagged"):
        kwargs["tag"] = "t"
    return CONV_CLASSES[cls](filters, 3, padding="same", name=name, **kwargs)


def _dense(cls: str, units: int, name: str, **kwargs: Any) -> L.Layer:
    if cls.startswith("Tagged"):
        kwargs["tag"] = "t"
    return DENSE_CLASSES[cls](units, name=name, **kwargs)


def _merge(kind: str, name: str, tensors: list[Any], **kwargs: Any) -> Any:
    return (L.Add if kind == "add" else L.Concatenate)(name=name, **kwargs)(tensors)


# ---- nested sub-models whose inner layers share names ----------------------------------------------------


@dataclass(frozen=True)
class NestedCase:
    spatial: bool  # Conv2D blocks on a 5x5 image, else Dense blocks on a vector
    width: int  # input channels / features
    blocks: tuple[tuple[str, int, bool], ...]  # (functional | sequential, width, second inner layer)
    merge: str  # add | concat: how the blocks' outputs meet
    residual: bool  # the input added back to the merged blocks (add merge only, blocks at input width)
    clone: bool  # through keras.models.clone_model (then the inner variables share their paths)
    wrapped: bool = False  # block 0 sits inside another nested model (two levels of names)
    reused: bool = False  # block 0 is called twice: on the input and on the merged result (shared weights)
    refusal: str | None = None


def _block(case: NestedCase, i: int, kind: str, width: int, second: bool) -> keras.Model:
    def inner(units: int, name: str) -> L.Layer:
        if case.spatial:
            return L.Conv2D(units, 3, padding="same", activation="relu", name=name)
        return L.Dense(units, activation="relu", name=name)

    shape = (SIDE, SIDE, case.width) if case.spatial else (case.width,)
    names = ["proj", "out"] if second else ["proj"]
    if kind == "sequential":
        return keras.Sequential([keras.Input(shape), *(inner(width, n) for n in names)], name=f"block_{i}")
    x = keras.Input(shape)
    y = x
    for n in names:
        y = inner(width, n)(y)
    return keras.Model(x, y, name=f"block_{i}")


@st.composite
def nested_cases(draw: Any) -> NestedCase:
    merge = draw(st.sampled_from(["add", "concat"]))
    width = draw(WIDTHS)
    residual = merge == "add" and draw(st.booleans())
    count = draw(st.integers(2, 3))
    blocks = []
    shared = width if residual else draw(WIDTHS)
    for _ in range(count):
        out = shared if merge == "add" else draw(WIDTHS)
        blocks.append((draw(st.sampled_from(["functional", "sequential"])), out, draw(st.booleans())))
    # a reused block reads its own output width: only when it maps the input width to itself
    reusable = blocks[0][1] == width and (merge == "add" or count == 1)
    return NestedCase(draw(st.booleans()), width, tuple(blocks), merge, residual, draw(st.booleans()),
                      draw(st.booleans()), reusable and merge == "add" and draw(st.booleans()))


def build_nested(case: NestedCase, seed: int) -> Built:
    keras.utils.set_random_seed(seed)
    shape = (SIDE, SIDE, case.width) if case.spatial else (case.width,)
    x = keras.Input(shape, name="x")
    blocks = [_block(case, i, *spec) for i, spec in enumerate(case.blocks)]
    if case.wrapped:
        inner_in = keras.Input(shape)
        blocks[0] = keras.Model(inner_in, blocks[0](inner_in), name="wrapper")
    y = _merge(case.merge, "merge", [block(x) for block in blocks])
    if case.residual:
        y = L.Add(name="residual")([x, y])
    if case.reused:
        y = L.Add(name="again")([y, blocks[0](y)])
    if case.spatial:
        y = L.GlobalAveragePooling2D(name="gap")(y)
    model = keras.Model(x, L.Dense(3, name="head")(y), name="nested")
    if case.clone:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        model = copy
    return model, _floats((2, *shape), seed)


# ---- subclasses of Conv2D / Dense --------------------------------------------------------------------------


@dataclass(frozen=True)
class SubclassCase:
    width: int
    stem: str  # CONV_CLASSES key
    branch: str  # CONV_CLASSES key of the residual / concat branch conv
    merge: str  # add | concat
    hidden: str  # DENSE_CLASSES key
    refusal: str | None = None


def _refusal_for(names: dict[str, str]) -> str | None:
    """The first layer (by name) whose class overrides a computing method: the refusal names it."""
    for layer, cls in names.items():
        if cls in OVERRIDES:
            return rf"(?s)'{layer}'.*{OVERRIDES[cls]}|{OVERRIDES[cls]}.*'{layer}'"
    return None


@st.composite
def subclass_cases(draw: Any, *, overriding: bool = True) -> SubclassCase:
    configuring = ["Conv2D", "TaggedConv2D"], ["Dense", "TaggedDense"]
    stem, branch = draw(st.sampled_from(configuring[0])), draw(st.sampled_from(configuring[0]))
    hidden = draw(st.sampled_from(configuring[1]))
    # half the models hold one layer whose class changes the computation (it must be refused by name)
    if overriding and draw(st.booleans()):
        where = draw(st.sampled_from(["stem", "branch", "hidden"]))
        chosen = draw(st.sampled_from(sorted(c for c in OVERRIDES if (c in DENSE_CLASSES) == (where == "hidden"))))
        stem, branch, hidden = (chosen if where == w else c for w, c in (("stem", stem), ("branch", branch),
                                                                         ("hidden", hidden)))
    refusal = _refusal_for({"stem": stem, "branch": branch, "hidden": hidden})
    return SubclassCase(draw(WIDTHS), stem, branch, draw(st.sampled_from(["add", "concat"])), hidden, refusal)


def build_subclass(case: SubclassCase, seed: int) -> Built:
    keras.utils.set_random_seed(seed)
    x = keras.Input((SIDE, SIDE, 3), name="x")
    y = _conv(case.stem, case.width, "stem", activation="relu")(x)
    b = _conv(case.branch, case.width, "branch")(y)
    y = _merge(case.merge, "merge", [y, b])
    y = L.GlobalAveragePooling2D(name="gap")(y)
    y = _dense(case.hidden, 4, "hidden", activation="relu")(y)
    return keras.Model(x, L.Dense(2, name="head")(y), name="subclassed"), _floats((1, SIDE, SIDE, 3), seed)


# ---- Embedding(mask_zero=True) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskCase:
    tokens: int  # sequence length
    dim: int
    between: tuple[str, ...]  # layers the mask passes through (dense | dropout | relu)
    consumer: str  # none | gap | attention: what uses the mask (none: nothing does)
    refusal: str | None = None


MASK_CONSUMERS = {"gap": "pool", "attention": "attn"}


@st.composite
def mask_cases(draw: Any, *, consumers: bool = True) -> MaskCase:
    consumer = draw(st.sampled_from(["none", "gap", "attention"] if consumers else ["none"]))
    refusal = None if consumer == "none" else rf"(?s)mask.*'{MASK_CONSUMERS[consumer]}'"
    between = tuple(draw(st.lists(st.sampled_from(["dense", "dropout", "relu"]), max_size=2)))
    return MaskCase(draw(st.integers(3, 6)), draw(st.integers(2, 6)), between, consumer, refusal)


def build_mask(case: MaskCase, seed: int) -> Built:
    keras.utils.set_random_seed(seed)
    x = keras.Input((case.tokens,), dtype="int32", name="tokens")
    e = L.Embedding(8, case.dim, mask_zero=True, name="emb")(x)
    for i, kind in enumerate(case.between):
        if kind == "dense":
            e = L.Dense(case.dim, name=f"mid{i}")(e)
        elif kind == "dropout":
            e = L.Dropout(0.2, name=f"mid{i}")(e)
        else:
            e = L.ReLU(name=f"mid{i}")(e)
    # a residual around a Dense: the mask flows through the add too, and erase has a branch
    h = L.Add(name="residual")([e, L.Dense(case.dim, name="branch")(e)])
    if case.consumer == "gap":
        h = L.GlobalAveragePooling1D(name="pool")(h)
    elif case.consumer == "attention":
        h = L.MultiHeadAttention(2, 2, name="attn")(h, h)
    else:
        h = L.Flatten(name="flat")(h)
    tokens = np.random.default_rng(seed).integers(1, 8, (2, case.tokens)).astype("int32")
    tokens[:, -1] = 0  # padding present, so a dropped mask shows
    return keras.Model(x, L.Dense(3, name="head")(h), name="masked"), tokens


# ---- frozen layers in residual branches ---------------------------------------------------------------------


@dataclass(frozen=True)
class FrozenCase:
    width: int
    branches: tuple[tuple[str, bool], ...]  # (conv_bn | conv | nested, frozen) per residual branch
    refusal: str | None = None


@st.composite
def frozen_cases(draw: Any) -> FrozenCase:
    branches = draw(st.lists(st.tuples(st.sampled_from(["conv_bn", "conv", "nested"]), st.booleans()),
                             min_size=1, max_size=3))
    return FrozenCase(draw(WIDTHS), tuple(branches))


def build_frozen(case: FrozenCase, seed: int) -> Built:
    keras.utils.set_random_seed(seed)
    x = keras.Input((SIDE, SIDE, 3), name="x")
    y = L.Conv2D(case.width, 3, padding="same", activation="relu", name="stem")(x)
    for i, (kind, frozen) in enumerate(case.branches):
        if kind == "nested":
            inner_in = keras.Input((SIDE, SIDE, case.width))
            inner = L.BatchNormalization(name="bn")(L.Conv2D(case.width, 3, padding="same", name="conv")(inner_in))
            layer = keras.Model(inner_in, inner, name=f"sub{i}")
            b = layer(y)
        else:
            layer = L.Conv2D(case.width, 3, padding="same", name=f"conv{i}")
            b = layer(y)
            if kind == "conv_bn":
                layer = L.BatchNormalization(name=f"bn{i}")  # the freeze goes on the BN: the fine-tuning case
                b = layer(b)
        layer.trainable = not frozen
        y = L.Add(name=f"add{i}")([y, L.ReLU(name=f"relu{i}")(b)])
    y = L.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, L.Dense(3, name="head")(y), name="frozen"), _floats((2, SIDE, SIDE, 3), seed)


# ---- dict inputs and outputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DictCase:
    inputs: tuple[tuple[str, int], ...]  # (key, features) in declaration order
    outputs: tuple[tuple[str, int], ...]  # (key, units) in declaration order
    given_order: tuple[str, ...]  # the order the example dict is written in
    merge: str  # add | concat
    tap: str | None = None  # an extra output key whose value is the residual sum itself (no head)
    refusal: str | None = None


KEYS = ("b", "a", "c", "z_in", "m")


@st.composite
def dict_cases(draw: Any, *, taps: bool = True) -> DictCase:
    in_keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    out_keys = draw(st.lists(st.sampled_from(("y", "out_b", "a_out", "k")), min_size=1, max_size=3, unique=True))
    merge = draw(st.sampled_from(["add", "concat"]))
    inputs = tuple((k, draw(WIDTHS)) for k in in_keys)
    outputs = tuple((k, draw(WIDTHS)) for k in out_keys)
    tap = draw(st.sampled_from([None, "tap", "aa"])) if taps else None
    return DictCase(inputs, outputs, tuple(draw(st.permutations(in_keys))), merge, tap)


def build_dict(case: DictCase, seed: int) -> Built:
    keras.utils.set_random_seed(seed)
    xs = {k: keras.Input((n,), name=k) for k, n in case.inputs}
    hs = [L.Dense(4, activation="relu", name=f"enc_{k}")(xs[k]) for k, _ in case.inputs]
    h = hs[0] if len(hs) == 1 else _merge(case.merge, "merge", hs)
    h = L.Add(name="residual")([h, L.Dense(h.shape[-1], name="branch")(h)])
    outs = {k: L.Dense(n, name=f"head_{k}")(h) for k, n in case.outputs}
    if case.tap is not None:
        outs[case.tap] = h
    rng = np.random.default_rng(seed)
    given = {k: rng.standard_normal((2, dict(case.inputs)[k])).astype("float32") for k in case.given_order}
    return keras.Model(xs, outs, name="dict_io"), given


# ---- per-layer dtype policies ---------------------------------------------------------------------------------


POLICIES = ("float32", "mixed_float16", "mixed_bfloat16", "float16", "bfloat16")


@dataclass(frozen=True)
class PolicyCase:
    spatial: bool
    width: int
    policies: tuple[str, ...]  # stem, branch, merge, hidden: each layer's dtype policy
    merge: str  # add | concat
    head: str  # the head's policy
    norm: str = "none"  # none | batch | layer: a normalization after the merge, in the merge's policy
    refusal: str | None = None


@st.composite
def policy_cases(draw: Any, *, bfloat16_outputs: bool = True) -> PolicyCase:
    policies = tuple(draw(st.lists(st.sampled_from(POLICIES), min_size=4, max_size=4)))
    heads = [p for p in POLICIES if bfloat16_outputs or "bfloat16" not in p]
    head = draw(st.sampled_from(["float32", "float32", *heads]))
    return PolicyCase(draw(st.booleans()), draw(WIDTHS), policies, draw(st.sampled_from(["add", "concat"])), head,
                      draw(st.sampled_from(["none", "batch", "layer"])))


def build_policy(case: PolicyCase, seed: int) -> Built:
    """Policies set per layer with `dtype=`: the global policy is never touched."""
    keras.utils.set_random_seed(seed)
    stem_p, branch_p, merge_p, hidden_p = case.policies
    if case.spatial:
        x = keras.Input((SIDE, SIDE, 3), name="x")
        y = L.Conv2D(case.width, 3, padding="same", activation="relu", name="stem", dtype=stem_p)(x)
        b = L.Conv2D(case.width, 3, padding="same", name="branch", dtype=branch_p)(y)
    else:
        x = keras.Input((6,), name="x")
        y = L.Dense(case.width, activation="relu", name="stem", dtype=stem_p)(x)
        b = L.Dense(case.width, name="branch", dtype=branch_p)(y)
    y = _merge(case.merge, "merge", [y, b], dtype=merge_p)
    if case.norm == "batch":
        y = L.BatchNormalization(name="norm", dtype=merge_p)(y)
    elif case.norm == "layer":
        y = L.LayerNormalization(name="norm", dtype=merge_p)(y)
    if case.spatial:
        y = L.GlobalAveragePooling2D(name="gap", dtype=merge_p)(y)
    y = L.Dense(4, activation="relu", name="hidden", dtype=hidden_p)(y)
    shape = (2, SIDE, SIDE, 3) if case.spatial else (2, 6)
    return keras.Model(x, L.Dense(2, name="head", dtype=case.head)(y), name="policies"), _floats(shape, seed)


# ---- the registry -----------------------------------------------------------------------------------------------

STRATEGIES: dict[str, Callable[[], st.SearchStrategy]] = {
    "nested": nested_cases,
    "subclass": subclass_cases,
    "mask": mask_cases,
    "frozen": frozen_cases,
    "dict_io": dict_cases,
    "policies": policy_cases,
}

# CI draws what the nightly run draws (both constructs the first survey caught, a dict output whose
# producer erase removes and bfloat16 outputs, are fixed and covered by tests/e2e/test_check_keras_review.py)
CI_STRATEGIES: dict[str, Callable[[], st.SearchStrategy]] = dict(STRATEGIES)

BUILDERS: dict[type, Callable[[Any, int], Built]] = {
    NestedCase: build_nested, SubclassCase: build_subclass, MaskCase: build_mask, FrozenCase: build_frozen,
    DictCase: build_dict, PolicyCase: build_policy,
}


def build_keras(case: Any, seed: int) -> Built:
    """`(model, example_inputs)` for a drawn case, rebuilt exactly from its description and seed."""
    return BUILDERS[type(case)](case, seed)
