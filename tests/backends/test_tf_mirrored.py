"""The Keras H2SPG under tf.distribute.MirroredStrategy on two logical CPUs equals one device.

Logical devices can only be configured before TensorFlow first touches its devices, which other
tests in this process may already have done, so the comparison runs in a fresh interpreter
(`_compare`) that writes its findings to a JSON file. The model has no BatchNorm: Keras' default
BatchNormalization normalises each replica's shard on its own, a different function from one
batch over both shards (`synchronized=True` is the cure, outside this test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GLOBAL_BATCH, EPOCHS = 32, 4


def _run(strategy: Any, x: Any, y: Any) -> dict[str, Any]:
    import keras
    import numpy as np

    import asgnas_ir as ai
    from asgnas_ir.backends.tensorflow import H2SPG

    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input(x.shape[1:])
        h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inputs)
        h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(h)
        model = keras.Model(inputs, keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(h)))
        space = ai.search_space(ai.compile(model, x[:1]), mode="prune")
        opt = H2SPG(model, space, lr=0.1, warmup_steps=4, target_group_sparsity=0.5, lmbda=2.0, epsilon=0.5)
        model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    zero_before = opt.zero_groups()
    redundant = opt.finalize()
    copies = [[np.asarray(c) for c in getattr(v.value, "values", [v.value])] for v in model.trainable_variables]
    return {
        "groups": len(space.groups), "redundant": redundant, "zero_before": zero_before, "zero": opt.zero_groups(),
        "weights": [v.numpy().ravel().tolist() for v in model.trainable_variables],
        "replica_spread": max(float(np.abs(c - cs[0]).max()) for cs in copies for c in cs),
        "replicas": int(strategy.num_replicas_in_sync),
    }


def _compare(out: str) -> None:
    """Train on one device, then on two logical CPUs mirrored; write both results to `out`."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 6, 6, 2)).astype("float32"), rng.integers(0, 3, 128)
    single = _run(tf.distribute.get_strategy(), x, y)
    mirrored = _run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), x, y)
    Path(out).write_text(json.dumps({"single": single, "mirrored": mirrored}))


@pytest.mark.slow
def test_mirrored_strategy_replicas_agree_and_equal_one_device(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    out = tmp_path / "result.json"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    code = f"from tests.backends.test_tf_mirrored import _compare; _compare({str(out)!r})"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    single, mirrored = result["single"], result["mirrored"]
    assert mirrored["replicas"] == 2 and mirrored["replica_spread"] == 0.0  # both copies of every variable agree
    assert single["zero_before"], "the half-space projection should have zeroed groups during training"
    for key in ("groups", "redundant", "zero_before", "zero"):
        assert mirrored[key] == single[key], key
    for got, expected in zip(mirrored["weights"], single["weights"], strict=True):
        assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 1e-5
