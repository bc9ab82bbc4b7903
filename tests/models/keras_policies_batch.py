"""Replicas for issue 14 findings 9 (generated code fixed to the example's batch) and 10 (Keras
mixed-precision policies dropped). Tiny, seeded, inference mode."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import torch  # noqa: E402
from torch import nn  # noqa: E402

# ---- finding 9: reshapes that keep the batch ----------------------------------------------------------


def keras_flatten_dense():
    """Conv → Flatten → Dense: the flatten's target was written as (1, 288)."""
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    y = keras.layers.MaxPooling2D(2, name="pool")(y)
    y = keras.layers.Flatten(name="flat")(y)
    y = keras.layers.Dense(6, activation="relu", name="fc1")(y)
    return keras.Model(x, keras.layers.Dense(4, name="head")(y), name="kpb_flatten")


def keras_reshape():
    """Dense → Reshape((4, 6)) → Dense on the last axis → Reshape((-1,)) → Dense."""
    import keras

    keras.utils.set_random_seed(1)
    x = keras.Input((10,))
    y = keras.layers.Dense(24, activation="relu", name="up")(x)
    y = keras.layers.Reshape((4, 6), name="rows")(y)
    y = keras.layers.Dense(5, activation="tanh", name="per_row")(y)
    y = keras.layers.Reshape((-1,), name="back")(y)
    return keras.Model(x, keras.layers.Dense(3, name="head")(y), name="kpb_reshape")


class TorchView(nn.Module):
    """`x.view(x.size(0), -1)` after a conv, and `torch.flatten(x, 1)` after another."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 6 * 6, 5)
        self.fc2 = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv1(x))
        a = self.fc1(a.view(a.size(0), -1))
        b = torch.relu(self.conv2(x))
        b = self.fc2(torch.flatten(b, 1))
        return a + b


def torch_view() -> nn.Module:
    return TorchView().eval()


# ---- finding 10: dtype policies ------------------------------------------------------------------------


def keras_mixed_layers():
    """Per-layer `mixed_float16` conv/BN/pool/dense/softmax and a float32 head (the keras.io recipe)."""
    import keras

    keras.utils.set_random_seed(3)
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(8, 3, activation="relu", name="conv", dtype="mixed_float16")(x)
    y = keras.layers.BatchNormalization(name="bn", dtype="mixed_float16")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap", dtype="mixed_float16")(y)
    y = keras.layers.Dense(6, name="fc1", dtype="mixed_float16")(y)
    y = keras.layers.Softmax(name="sm", dtype="mixed_float16")(y)
    return keras.Model(x, keras.layers.Dense(4, name="head", dtype="float32")(y), name="kpb_mixed_layers")


def keras_global_policy(policy: str = "mixed_float16"):
    """`set_global_policy(policy)` while building (restored after): a residual MLP, float32 head."""
    import keras

    keras.utils.set_random_seed(4)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        x = keras.Input((12,))
        h = keras.layers.Dense(16, activation="relu", name="fc1")(x)
        r = keras.layers.Dense(16, activation="gelu", name="fc2")(h)
        h = keras.layers.Add(name="add")([h, r])
        h = keras.layers.LayerNormalization(name="ln")(h)
        out = keras.layers.Dense(5, name="head", dtype="float32")(h)
        return keras.Model(x, out, name=f"kpb_{policy}")
    finally:
        keras.mixed_precision.set_global_policy(previous)


def keras_bfloat16_layer():
    """One `dtype="bfloat16"` Dense (bfloat16 variables) between float32 layers, mixed by a keras.ops add."""
    import keras

    keras.utils.set_random_seed(5)
    x = keras.Input((10,))
    h = keras.layers.Dense(16, activation="relu", name="fc1")(x)
    b = keras.layers.Dense(16, name="low", dtype="bfloat16")(h)
    h = keras.layers.Dense(16, name="fc2")(h)
    h = keras.layers.Add(name="add")([h, b])
    return keras.Model(x, keras.layers.Dense(3, name="head")(h), name="kpb_bf16_layer")
