"""H2SPG for Keras/TensorFlow: held to the numpy reference, fit ≡ custom loop, finalize, and resume.

The search spaces are built by hand (channel groups of small Dense / Conv2D models, with the IR's
slice axes on the Keras variables), so these tests do not need the Keras frontend.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from asgnas_ir.backends import reference as ref  # noqa: E402
from asgnas_ir.backends._groups import num_selected, score_window  # noqa: E402
from asgnas_ir.backends.tensorflow import H2SPG, live_variables, rerandomize, zero_slices  # noqa: E402
from asgnas_ir.errors import AsgnasError  # noqa: E402
from asgnas_ir.ir.graph import Graph, Param  # noqa: E402
from asgnas_ir.passes.analysis.dependency_graph import ChannelGroup, Slice  # noqa: E402
from asgnas_ir.passes.analysis.search_space import SearchSpace  # noqa: E402

if keras.backend.backend() != "tensorflow":  # pragma: no cover - KERAS_BACKEND set elsewhere
    pytest.skip("the TensorFlow backend needs KERAS_BACKEND=tensorflow", allow_module_level=True)

HIDDEN = 4


def _path(model: keras.Model, short: str) -> str:
    """The variable path of `layer/name` (functional models do not prefix the model's name)."""
    return next(v.path for v in model.variables if v.path == short or v.path.endswith("/" + short))


def _channel_space(layers: list[tuple[str, str | None, str, int]], model: keras.Model) -> SearchSpace:
    """One channel group per output channel of each hidden layer.

    `layers`: (layer name, its batch-norm layer or None, next layer name, kernel input axis of the next layer).
    Group j of a layer: its kernel's column j (last axis), bias j, BN gamma/beta j (moving stats as `stat`),
    and the next layer's kernel at j along its input axis. Removing every channel of a layer is invalid.
    """
    groups: list[ChannelGroup] = []
    covers: list[list[int]] = []
    for name, bn, nxt, in_axis in layers:
        rank = len(live_variables(model)[_path(model, f"{name}/kernel")].shape)
        first = len(groups)
        for j in range(HIDDEN):
            slices = [Slice(f"{name}/kernel", rank - 1, [j], "out"), Slice(f"{name}/bias", 0, [j], "out")]
            if bn:
                slices += [Slice(f"{bn}/gamma", 0, [j], "out"), Slice(f"{bn}/beta", 0, [j], "out")]
                slices += [Slice(f"{bn}/moving_mean", 0, [j], "stat"), Slice(f"{bn}/moving_variance", 0, [j], "stat")]
            slices.append(Slice(f"{nxt}/kernel", in_axis, [j], "in"))
            groups.append(ChannelGroup(id=len(groups), slices=slices, nodes=[name]))
        covers.append(list(range(first, len(groups))))
    sources = {s.param: _path(model, s.param) for g in groups for s in g.slices}
    return SearchSpace(mode="prune", groups=groups, param_sources=sources, value_covers=covers)


def _dense(seed: int = 0) -> tuple[keras.Model, SearchSpace]:
    """Dense → BN → relu → Dense → relu → Dense: groups of the two hidden layers share the middle kernel."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(HIDDEN, name="d1")(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(h))
    h = keras.layers.Dense(HIDDEN, activation="relu", name="d2")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(h), name="dense_net")
    return model, _channel_space([("d1", "bn1", "d2", 0), ("d2", None, "head", 0)], model)


def _conv(seed: int = 0) -> tuple[keras.Model, SearchSpace]:
    """Conv → BN → relu → Conv → relu → global average pool → Dense (kernels HWIO, input axis 2)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(HIDDEN, 3, padding="same", name="c1")(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(h))
    h = keras.layers.Conv2D(HIDDEN, 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(h), name="conv_net")
    return model, _channel_space([("c1", "bn1", "c2", 2), ("c2", None, "head", 0)], model)


def _data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 2)).astype("float32"), rng.integers(0, 3, n)


class _Layout:
    """Independent numpy view: the model's trainable variables concatenated, each group's entries in it."""

    def __init__(self, model: keras.Model, space: SearchSpace) -> None:
        self.variables = list(model.trainable_variables)
        sizes = [int(np.prod(v.shape)) for v in self.variables]
        self.offsets = dict(zip((v.path for v in self.variables), np.cumsum([0, *sizes]).tolist(), strict=False))
        self.groups = []
        for group in space.groups:
            idx: set[int] = set()
            for s in group.slices:
                if s.kind == "stat":
                    continue
                var = live_variables(model)[space.param_sources[s.param]]
                grid = np.arange(int(np.prod(var.shape))).reshape(tuple(var.shape))
                idx.update((np.take(grid, s.indices, axis=s.axis).ravel() + self.offsets[var.path]).tolist())
            self.groups.append(np.array(sorted(idx), np.int64))

    def flat(self) -> np.ndarray:
        return np.concatenate([np.asarray(v.numpy(), np.float64).ravel() for v in self.variables])

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        sizes = [int(np.prod(v.shape)) for v in self.variables]
        return [c.reshape(tuple(v.shape)) for c, v in zip(np.split(flat, np.cumsum(sizes)[:-1]), self.variables, strict=True)]


@pytest.mark.parametrize("lmbda", [5e-2, None], ids=["dhspg_lambda", "auto_lambda"])
def test_trajectory_matches_numpy_reference(lmbda: float | None) -> None:
    """Warm-up (SGD + score EMA), selection, then SGD on kept entries and the half-space step on the redundant ones
    (λ by DHSPG's rule, or the automatic one from the norms at selection)."""
    model, space = _dense()
    lr, mom, wd, eps, omega, warmup, steps, period = 0.1, 0.9, 1e-3, 0.5, 0.5, 4, 8, 5
    opt = H2SPG(model, space, lr=lr, momentum=mom, weight_decay=wd, target_group_sparsity=0.5, warmup_steps=warmup,
                ema=omega, epsilon=eps, lmbda=lmbda, shrink_period=period)
    start = np.zeros(0)
    layout = _Layout(model, space)
    rng = np.random.default_rng(1)
    x, buf, ema = layout.flat(), np.zeros(len(layout.flat())), np.zeros(len(space.groups))
    red: list[int] = []
    seen_projection = seen_kept = False
    for t in range(steps):
        g = rng.normal(size=x.shape) * 0.1
        if red and t == warmup:  # drive the first redundant group across the origin: it must be projected
            g[layout.groups[red[0]]] = 15 * x[layout.groups[red[0]]]
        g = g.astype(np.float32).astype(np.float64)
        if not red and t >= warmup - score_window(omega):
            ema = omega * ema + (1 - omega) * ref.redundancy_scores([x[i] for i in layout.groups], [g[i] for i in layout.groups])
        buf = mom * buf + g + wd * x
        base = x - lr * buf
        if red:
            idx = [layout.groups[i] for i in sorted(red)]
            dot = np.array([x[i] @ g[i] for i in idx])
            norm = np.array([np.linalg.norm(x[i]) for i in idx])
            gg = np.array([g[i] @ g[i] for i in idx])
            lams = ref.select_lambda(dot, norm, gg, lmbda) if lmbda is not None else ref.auto_lambda(dot, norm**2, gg, start, lr, period)
            new, projected = ref.group_half_space_step(x, g, idx, lr, lams, eps)
            member = np.zeros(x.shape, bool)
            member[np.concatenate(idx)] = True
            base = np.where(member, new, base)
            seen_projection |= bool(projected.any())
            seen_kept |= bool((~projected).any())
        x = base
        if not red and t + 1 >= warmup:
            red = ref.select_redundant(ema, num_selected(0.5, len(space.groups)), space.is_valid)
            start = np.array([np.linalg.norm(x[layout.groups[i]]) for i in sorted(red)])

        grads = [tf.constant(c, tf.float32) for c in layout.split(g)]
        opt.apply_gradients(zip(grads, layout.variables, strict=True))
        np.testing.assert_allclose(layout.flat(), x, rtol=0, atol=1e-5)
        if t + 1 == warmup:
            np.testing.assert_allclose(opt.scores, ema, rtol=0, atol=1e-6)
            assert opt.selected and opt.redundant_groups == red and len(red) == 4
    assert seen_projection and seen_kept
    assert space.is_valid(red) and not space.is_valid(list(range(HIDDEN)))


def _fit_model(seed: int = 0) -> tuple[keras.Model, SearchSpace, H2SPG]:
    model, space = _conv(seed)
    opt = H2SPG(model, space, lr=0.05, weight_decay=1e-4, target_group_sparsity=0.5, warmup_steps=4, shrink_period=8)
    return model, space, opt


def _loss() -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _custom_loop(model: keras.Model, opt: H2SPG, x: np.ndarray, y: np.ndarray, batch: int, epochs: int) -> None:
    loss_fn = _loss()

    @tf.function
    def step(xb: tf.Tensor, yb: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    for _ in range(epochs):
        for i in range(0, len(x), batch):
            step(x[i : i + batch], y[i : i + batch])


def test_fit_zeroes_exactly_the_chosen_groups_and_matches_the_custom_loop() -> None:
    """fit for 4 epochs: exactly the selected groups are zero (projected by the step, so finalize() forces nothing);
    a custom GradientTape loop gives the same result."""
    x, y = _data()
    model, space, opt = _fit_model()
    model.compile(optimizer=opt, loss=_loss())
    model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)
    assert int(opt.iterations.numpy()) == 16 and opt.selected
    assert len(opt.redundant_groups) == num_selected(0.5, len(space.groups)) and space.is_valid(opt.redundant_groups)
    assert opt.zero_groups() == sorted(opt.redundant_groups)
    chosen = opt.finalize()
    assert opt.zero_groups() == chosen == sorted(opt.redundant_groups)

    twin, _, twin_opt = _fit_model()
    _custom_loop(twin, twin_opt, x, y, batch=16, epochs=4)
    assert twin_opt.redundant_groups == opt.redundant_groups
    np.testing.assert_allclose(twin_opt.scores, opt.scores, rtol=1e-5, atol=1e-7)
    twin_opt.finalize()
    for a, b in zip(model.variables, twin.variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)


@pytest.mark.parametrize("cut", [2, 6])
def test_state_round_trip_resumes_bit_identically(cut: int) -> None:
    """Saving model and optimizer state at step `cut` (warm-up or sparsifying) and resuming gives the uninterrupted run."""
    x, y = _data(32, seed=3)
    model, _, opt = _fit_model()
    _custom_loop(model, opt, x, y, batch=4, epochs=1)

    first, _, first_opt = _fit_model()
    _custom_loop(first, first_opt, x[: cut * 4], y[: cut * 4], batch=4, epochs=1)
    weights, state = [v.numpy() for v in first.variables], first_opt.state_dict()
    resumed, _, resumed_opt = _fit_model(seed=7)  # other initial weights: the checkpoint must overwrite them
    for v, w in zip(resumed.variables, weights, strict=True):
        v.assign(w)
    resumed_opt.load_state_dict(state)
    assert resumed_opt.selected == (cut >= 4) and int(resumed_opt.iterations.numpy()) == cut
    _custom_loop(resumed, resumed_opt, x[cut * 4 :], y[cut * 4 :], batch=4, epochs=1)

    assert resumed_opt.redundant_groups == opt.redundant_groups
    np.testing.assert_array_equal(resumed_opt.scores, opt.scores)
    for a, b in zip(model.variables, resumed.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_binding_helpers() -> None:
    """zero_slices zeroes IR slices (axes of the stored param), rerandomize follows the Keras-layout rule."""
    model, space = _conv()
    graph = Graph.model_construct(params={p: Param(shape=(1,), source=s) for p, s in space.param_sources.items()})
    live = live_variables(model)
    zero_slices(model, graph, space.groups[1].slices)
    assert not live[_path(model, "c1/kernel")].numpy()[..., 1].any() and live[_path(model, "c1/kernel")].numpy()[..., 0].any()
    assert not live[_path(model, "c2/kernel")].numpy()[:, :, 1, :].any()
    assert live[_path(model, "bn1/moving_variance")].numpy()[1] == 1.0  # statistics are not zeroed

    rerandomize(model, seed=0)
    kernel = live[_path(model, "c2/kernel")].numpy()
    assert abs(kernel.std() - (3 * 3 * HIDDEN) ** -0.5) < 0.5 * (3 * 3 * HIDDEN) ** -0.5
    variance = live[_path(model, "bn1/moving_variance")].numpy()
    assert ((variance >= 0.5) & (variance <= 1.5)).all()
    assert np.abs(live[_path(model, "bn1/beta")].numpy()).max() < 0.5
    before = {p: v.numpy().copy() for p, v in live.items()}
    rerandomize(model, seed=0)
    assert all(np.array_equal(before[p], v.numpy()) for p, v in live.items())


def test_missing_variable_names_it() -> None:
    """A search space bound to a model without one of its variables raises an AsgnasError naming the source."""
    _, space = _conv()
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    with pytest.raises(AsgnasError, match=r"source 'c1/kernel'"):
        H2SPG(other, space)


def test_fit_with_the_keras_frontend_space() -> None:
    """The space from `ai.compile(keras_model)` binds by `variable.path`; fit + finalize zero exactly the chosen groups."""
    import asgnas_ir as ai

    model, _ = _conv()
    try:
        space = ai.search_space(ai.compile(model), mode="prune")
    except (AsgnasError, NotImplementedError) as error:  # pragma: no cover - the Keras frontend is still growing
        pytest.skip(f"the Keras frontend cannot lower this model yet: {error}")
    opt = H2SPG(model, space, lr=0.05, target_group_sparsity=0.5, warmup_steps=4, shrink_period=4)
    model.compile(optimizer=opt, loss=_loss())
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert opt.zero_groups() == sorted(opt.redundant_groups)
    assert opt.finalize() == opt.zero_groups() == sorted(opt.redundant_groups)
    assert len(opt.redundant_groups) == num_selected(0.5, len(space.groups)) and space.is_valid(opt.redundant_groups)


@pytest.mark.parametrize("period", [3, 6])
def test_default_lambda_zeroes_the_chosen_groups_within_the_period(period: int) -> None:
    """With the defaults (automatic λ, ε 0.5) every chosen group is exactly zero by the optimizer's own projection
    `shrink_period` steps after selection, so finalize() has nothing to force and says nothing."""
    import warnings

    from asgnas_ir.backends._groups import GroupsNotZeroWarning

    x, y = _data()
    model, space = _conv()
    opt = H2SPG(model, space, lr=0.05, weight_decay=1e-4, target_group_sparsity=0.5, warmup_steps=4, shrink_period=period)
    _custom_loop(model, opt, x, y, batch=16, epochs=1)  # 4 steps: warm-up, selection after the last
    assert opt.selected and not set(opt.redundant_groups) & set(opt.zero_groups())
    _custom_loop(model, opt, x, y, batch=16, epochs=math.ceil(period / 4))
    assert set(opt.redundant_groups) <= set(opt.zero_groups())
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupsNotZeroWarning)
        assert opt.finalize() == sorted(opt.redundant_groups)


def test_finalize_warns_about_groups_far_from_zero() -> None:
    """DHSPG's λ of 1e-3 leaves the chosen groups near their norm: finalize() names them in a GroupsNotZeroWarning
    (an error when filtered so, with the variables untouched), then forces them to zero."""
    import warnings

    from asgnas_ir.backends._groups import GroupsNotZeroWarning

    x, y = _data()
    model, space = _conv()
    opt = H2SPG(model, space, lr=0.05, target_group_sparsity=0.5, warmup_steps=4, lmbda=1e-3, epsilon=0.0)
    _custom_loop(model, opt, x, y, batch=16, epochs=2)
    before = [np.array(v.numpy()) for v in model.variables]
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupsNotZeroWarning)
        with pytest.raises(GroupsNotZeroWarning, match=r"H2SPG\.finalize\(\): 4 of the 4 selected groups are not zero yet, 4 steps"):
            opt.finalize()
    for value, variable in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(value, variable.numpy())
    with pytest.warns(GroupsNotZeroWarning, match="% of its norm at selection"):
        chosen = opt.finalize()
    assert opt.zero_groups() == chosen


def test_auto_lambda_needs_epsilon() -> None:
    model, space = _conv()
    with pytest.raises(AsgnasError, match="epsilon must be > 0 with the automatic λ"):
        H2SPG(model, space, epsilon=0.0)
