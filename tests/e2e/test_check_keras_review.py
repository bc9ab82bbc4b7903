"""`check` findings of issue 14 (6, 7, 8, 13): the reference is the caller's own Keras model, a check
that zeroed nothing never passes, dict inputs/outputs match by key, softmax heads compare logits."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import torch

import asgnas_ir as ai
import asgnas_ir.api as api
from asgnas_ir.api import compare_outputs, softmax_logits
from asgnas_ir.errors import AsgnasError, FrontendError
from asgnas_ir.testing import load_generated, load_generated_keras
from asgnas_ir.tolerance import MIN_REF, outputs_match
from tests.models import keras_check_review as R

# ---- finding 6: the user's model is the reference ----------------------------------------------


def test_check_compares_with_the_users_own_activation_not_a_namesake() -> None:
    """The user's `gelu` is the tanh approximation. A clone rebuilt from config turned it into Keras'
    exact gelu, like the IR, and check said ok; against the user's model the difference shows (or
    compile refuses the function by name)."""
    try:
        report = ai.check(R.user_gelu(), None, fraction=0.0)
    except AsgnasError as exc:
        assert "fc1" in str(exc)
        return
    assert not report.ok
    assert report.max_abs_diff > report.tolerance and "differs from the reference" in (report.reason or "")


@pytest.mark.parametrize(("build", "layer"), [(R.with_lambda, "double"), (R.lambda_activation, "halve")])
def test_check_refuses_lambdas_as_compile_does(build, layer: str) -> None:  # noqa: ANN001
    with pytest.raises(FrontendError, match=layer) as caught:
        ai.check(build(), None)
    with pytest.raises(FrontendError) as compiled:
        ai.compile(build())
    assert str(caught.value) == str(compiled.value)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_check_runs_a_conv_subclass_with_its_own_constructor(fraction: float) -> None:
    report = ai.check(R.conv_subclass(), None, fraction=fraction)
    assert report.ok, report.reason
    assert report.zeroed > 0 or fraction == 0


def _state(model) -> list[np.ndarray]:  # noqa: ANN001
    return [np.array(v.numpy(), copy=True) for v in model.variables]


def _same_bits(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    # restoring is a copy, not arithmetic: the bytes must be the same
    return len(before) == len(after) and all(
        b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes() for b, a in zip(before, after, strict=True)
    )


def test_check_gives_the_users_model_back_bit_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    model = R.conv_subclass()
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype("float32")
    before, out_before = _state(model), np.asarray(model(x))
    report = ai.check(model, x, fraction=0.5, seed=3)  # re-randomized and zeroed in place meanwhile
    assert report.ok and report.zeroed > 0, report.reason
    assert _same_bits(before, _state(model))
    assert np.asarray(model(x)).tobytes() == out_before.tobytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("codegen failed")

    monkeypatch.setattr(api, "codegen", broken)
    with pytest.raises(RuntimeError, match="codegen failed"):
        ai.check(model, x, fraction=0.5, seed=4)
    assert _same_bits(before, _state(model))


def test_check_builds_an_unbuilt_sequential_before_saving_it() -> None:
    """Variables created by check's own build are given back with their initial values too."""
    import keras

    def unbuilt() -> keras.Sequential:
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.layers.Dense(8, activation="relu", name="a"), keras.layers.Dense(3, name="b")])

    x = np.random.default_rng(0).standard_normal((2, 6)).astype("float32")
    model = unbuilt()
    assert ai.check(model, x, fraction=0.5).ok
    fresh = unbuilt()
    fresh.build((None, 6))
    assert _same_bits(_state(fresh), _state(model))


# ---- finding 7: a fraction above zero zeroes a group, or the check says it tested nothing --------


def test_random_selection_takes_one_group_when_the_fraction_rounds_to_none() -> None:
    model = R.one_branch()
    graph = ai.compile(model, torch.randn(2, 6))
    space = ai.search_space(graph, mode="erase")
    assert len(space.groups) == 1
    assert ai.random_zero_groups(graph, space, 0.5) == [0]  # round(0.5) == 0 used to give []
    assert ai.random_zero_groups(graph, space, 0.0) == []


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_check_of_a_single_branch_zeroes_it(framework: str) -> None:
    if framework == "torch":
        report = ai.check(R.one_branch(), torch.randn(2, 6), mode="erase", fraction=0.5)
    else:
        report = ai.check(R.keras_one_branch(), None, mode="erase", fraction=0.5)
    assert report.groups == 1 and report.zeroed == 1
    assert report.ok and not report.untested, report.reason


def test_check_that_can_zero_nothing_is_not_ok() -> None:
    """One channel, which no selection may take (its value would be empty): the check compared only
    the unpruned model, so it must say so instead of passing."""
    report = ai.check(R.one_channel(), torch.randn(2, 4), fraction=0.5)
    assert report.groups == 1 and report.zeroed == 0
    assert not report.ok and report.max_abs_diff <= report.tolerance
    assert report.untested and "nothing was tested" in (report.reason or "")
    assert ai.check(R.one_channel(), torch.randn(2, 4), fraction=0.0).ok


# ---- finding 8: dict inputs and outputs by key -----------------------------------------------------


@pytest.mark.parametrize("target", ["keras", "torch", "onnx"])
@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_check_of_a_dict_model_matches_by_key(target: str, fraction: float) -> None:
    report = ai.check(R.dict_io(), R.dict_inputs_example(), target=target, fraction=fraction)
    assert report.ok, report.reason
    assert report.zeroed > 0 or fraction == 0


def test_compile_matches_dict_inputs_by_key() -> None:
    x = R.dict_inputs_example()
    by_key = ai.compile(R.dict_io(), x)
    reordered = ai.compile(R.dict_io(), {"a": x["a"], "b": x["b"]})
    assert by_key.fingerprint() == reordered.fingerprint()
    with pytest.raises(FrontendError, match=r"missing: \['b'\]"):
        ai.compile(R.dict_io(), {"a": x["a"]})


@pytest.mark.parametrize("input_names", [("b", "a"), ("b_in", "a_in")])
def test_generated_code_takes_and_returns_the_dicts_by_key(tmp_path: Path, input_names: tuple[str, str]) -> None:
    with warnings.catch_warnings():  # Keras warns that the keys are not the Input names: the second case's point
        warnings.filterwarnings("ignore", r"When providing `inputs` as a dict, all keys in the dict must match", UserWarning)
        model = R.dict_io(input_names)
    x = R.dict_inputs_example()
    expected = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    graph = ai.compile(model, x)
    ai.codegen(graph, target="keras", out_dir=tmp_path / "k")
    ai.codegen(graph, target="torch", out_dir=tmp_path / "t")

    keras_model = load_generated_keras(tmp_path / "k")
    got = keras_model(x, training=False)  # the caller's dict, in its declared order (b, a)
    assert isinstance(got, dict) and set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(np.asarray(got[key]), expected[key], rtol=0, atol=1e-4 * np.abs(expected[key]).max())

    torch_model = load_generated(tmp_path / "t")
    with torch.no_grad():
        got = torch_model(**{k: torch.from_numpy(v) for k, v in x.items()})
    assert isinstance(got, dict) and set(got) == set(expected)
    for key in expected:
        assert outputs_match(float(np.abs(got[key].numpy() - expected[key]).max()), float(np.abs(expected[key]).max()))


# ---- finding 13: a softmax head is compared as logits ----------------------------------------------


# small inputs give near-equal logits: every one of the 2000 probabilities is under MIN_REF (~1/2000),
# so compared as values a correct model was "degenerate" and failed
QUIET = (0.05 * np.random.default_rng(0).standard_normal((2, 16))).astype(np.float32)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_check_of_a_wide_softmax_head_compares_logits(fraction: float) -> None:
    report = ai.check(R.softmax_head(2000), QUIET, fraction=fraction)
    assert report.ok, report.reason
    assert report.max_ref > MIN_REF
    assert any("softmax" in note and "logits" in note for note in report.notes)


def test_check_of_a_torch_softmax_head_compares_logits() -> None:
    report = ai.check(R.torch_softmax_head(2000), torch.from_numpy(QUIET), fraction=0.0)
    assert report.ok, report.reason
    assert any("softmax" in note for note in report.notes)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def test_softmax_outputs_are_held_to_the_tolerance_of_their_logits() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 2000)).astype(np.float32)
    p = _softmax(logits)
    assert float(p.max()) < 0.02  # every probability small
    wrong = logits.copy()
    rows = np.arange(len(logits))
    wrong[rows, logits.argmin(axis=1)] += 0.02  # the least likely class 2% of a logit off: a change of
    # about 2e-7 in its probability, invisible next to the largest probability's tolerance
    q = _softmax(wrong)
    assert compare_outputs([p], [q])[0].ok  # probabilities compared as values: hidden
    found = compare_outputs([p], [q], softmax=[1])[0]
    assert not found.ok and "softmax" in found.problem and found.note
    # the same probabilities, and the same logits shifted by one constant, are one and the same output
    assert compare_outputs([p], [p.copy()], softmax=[1])[0].ok
    assert compare_outputs([p], [_softmax(logits + 3.0)], softmax=[1])[0].ok
    centred = softmax_logits(p, 1)
    np.testing.assert_allclose(centred, logits - logits.mean(axis=1, keepdims=True), atol=1e-5)
    # a head where every probability is under MIN_REF: degenerate as values, fine as logits
    flat = _softmax(0.01 * rng.standard_normal((1, 5000)).astype(np.float32))
    assert float(flat.max()) < MIN_REF
    assert not compare_outputs([flat], [flat.copy()])[0].ok
    assert compare_outputs([flat], [flat.copy()], softmax=[1])[0].ok


# ---- issue 13 leftover: the training report's verdict is check's rule --------------------------


def test_training_report_uses_checks_comparison() -> None:
    from asgnas_ir.backends.training import TrainConfig, job_report

    cost = SimpleNamespace(params=10, flops=100)
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((8, 4)).astype(np.float32)
    labels = reference.argmax(1)

    def report(generated: np.ndarray) -> dict:
        return job_report(TrainConfig(), 3, [1], (cost, cost), (reference, generated), labels, (1.0, 1.0), 0.0, [], [])

    worst = api.worst_output(compare_outputs([reference], [reference + 1e-3]))
    wrong = report(reference + 1e-3)
    assert wrong["equivalent"] is False
    assert wrong["max_abs_logit_diff"] == worst.max_abs_diff and wrong["max_ref"] == worst.max_ref
    assert report(reference + 1e-7)["equivalent"] is True
    assert report(np.zeros_like(reference))["equivalent"] is False


def test_a_dict_output_keeps_its_key_when_erase_hands_it_to_another_value() -> None:
    """Erasing the branch of `tap = h + branch(h)` leaves `h`: the output must still be `tap`, not come back
    under h's name (and in the wrong place of Keras' sorted-key dict). Fuzzer find."""
    keras.utils.set_random_seed(0)
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(4, activation="relu", name="enc")(x)
    h = keras.layers.Add(name="residual")([h, keras.layers.Dense(4, name="branch")(h)])
    model = keras.Model(x, {"out": keras.layers.Dense(2, name="head")(h), "tap": h})
    xs = np.random.default_rng(0).standard_normal((2, 4)).astype("float32")
    for target in ("keras", "torch"):
        report = ai.check(model, xs, mode="erase", fraction=1.0, seed=0, target=target)
        assert report.ok and report.zeroed == 1, report


def test_a_bfloat16_output_is_held_to_its_dtype_tolerance_not_exact_equality() -> None:
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(4, activation="relu", name="hidden")(x)
    model = keras.Model(x, keras.layers.Dense(2, name="head", dtype="bfloat16")(hidden))
    xs = np.random.default_rng(0).standard_normal((2, 6)).astype("float32")
    report = ai.check(model, xs, mode="prune", fraction=0.0, seed=2, target="torch")
    assert report.ok and report.tolerance > 0, report
