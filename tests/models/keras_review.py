"""Keras replicas from the Keras review (issue 14): tiny, seeded models that each once gave a silent
wrong result or a raw error. Every builder returns `(model, example_inputs)`.

Not registered in `tests/models/__init__.py` (`_TABLE` iterates torch replicas); the tests live in
`tests/frontends/test_keras_review.py`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers as L

Built = tuple[keras.Model, np.ndarray]


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _block(name: str, width: int = 4) -> keras.Model:
    inputs = keras.Input((width,))
    return keras.Model(inputs, L.Dense(8, activation="relu", name="proj")(inputs), name=name)


def clashing_nested() -> Built:
    """Two nested models that each hold a `Dense(8, name="proj")` (both variables' path is proj/kernel), concatenated."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    merged = L.Concatenate(name="merge")([_block("block_a")(inputs), _block("block_b")(inputs)])
    return keras.Model(inputs, L.Dense(3, name="head")(merged), name="clashing_nested"), _x(2, 4)


def _sequential(name: str) -> keras.Sequential:
    return keras.Sequential([keras.Input((4,)), L.Dense(6, activation="relu", name="d1"), L.Dense(3, name="d2")], name=name)


def nested_sequentials() -> Built:
    """Two nested Sequentials with the same inner layer names (unique paths until cloned or saved)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    out = L.Add(name="sum")([_sequential("s1")(inputs), _sequential("s2")(inputs)])
    return keras.Model(inputs, out, name="nested_sequentials"), _x(2, 4)


def cloned_sequentials() -> Built:
    """`nested_sequentials` after `keras.models.clone_model`: the inner variables now share their paths."""
    model, x = nested_sequentials()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy, x


class WSConv2D(L.Conv2D):
    """The keras.io weight-standardised conv: the kernel is standardised inside `convolution_op`."""

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        mean, var = keras.ops.moments(kernel, axes=[0, 1, 2], keepdims=True)
        return keras.ops.conv(inputs, (kernel - mean) / keras.ops.sqrt(var + 1e-10), padding="valid",
                              strides=list(self.strides), dilation_rate=self.dilation_rate)


def ws_conv() -> Built:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    h = WSConv2D(4, 3, name="ws")(inputs)
    return keras.Model(inputs, L.Conv2D(2, 1, name="head")(h), name="ws_conv"), _x(1, 6, 6, 3)


def _tokens(seed: int = 0) -> np.ndarray:
    tokens = np.random.default_rng(seed).integers(1, 10, (2, 6)).astype("int32")
    tokens[:, -2:] = 0  # padding: the tokens the implicit mask hides
    return tokens


def masked_attention() -> Built:
    """`Embedding(mask_zero=True)` feeding `MultiHeadAttention(2, 4)(e, e)`: the mask is implicit."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), dtype="int32")
    e = L.Embedding(10, 8, mask_zero=True, name="emb")(inputs)
    return keras.Model(inputs, L.MultiHeadAttention(2, 4, name="mha")(e, e), name="masked_attention"), _tokens()


def masked_pooling() -> Built:
    """A masked GlobalAveragePooling1D (the mask passes through a Dropout)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), dtype="int32")
    e = L.Dropout(0.1, name="drop")(L.Embedding(10, 8, mask_zero=True, name="emb")(inputs))
    return keras.Model(inputs, L.GlobalAveragePooling1D(name="gap")(e), name="masked_pooling"), _tokens()


def frozen_bn_residual() -> Built:
    """`y + bn(conv(y))` with the BatchNormalization frozen (`trainable = False`, the fine-tuning freeze)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 4))
    y = L.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inputs)
    bn = L.BatchNormalization(name="bn")
    bn.trainable = False
    branch = bn(L.Conv2D(4, 3, padding="same", name="branch_conv")(y))
    y = L.Add(name="residual")([y, branch])
    y = L.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(inputs, L.Dense(3, name="head")(y), name="frozen_bn_residual"), _x(1, 6, 6, 4)


def attention() -> Built:
    """Self-attention with 3 heads of 4 (kernels (8, 3, 4) / (3, 4, 8) in Keras, (8, 12) / (12, 8) in the IR)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 8))
    h = L.MultiHeadAttention(3, 4, name="mha")(inputs, inputs)
    return keras.Model(inputs, L.Dense(2, name="head")(h), name="attention"), _x(2, 5, 8)


def lora_dense() -> Built:
    """Dense layers with LoRA enabled (rank 2): the effective kernel is kernel + (alpha/rank)·A@B."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    hidden = L.Dense(8, activation="relu", name="d1")
    out = L.Dense(3, name="d2")
    model = keras.Model(inputs, out(hidden(inputs)), name="lora_dense")
    for layer in (hidden, out):
        layer.enable_lora(2)
        b = layer.lora_kernel_b  # starts at zero: give the adapters a visible effect
        b.assign(np.random.default_rng(1).standard_normal(tuple(b.shape)).astype("float32"))
    return model, _x(2, 5)


def lora_conv() -> Built:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    conv = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")
    model = keras.Model(inputs, L.Conv2D(2, 1, name="head")(conv(inputs)), name="lora_conv")
    conv.enable_lora(2)
    conv.lora_kernel_b.assign(np.random.default_rng(1).standard_normal(tuple(conv.lora_kernel_b.shape)).astype("float32"))
    return model, _x(1, 6, 6, 3)


def spatial_dropout() -> Built:
    """Conv → SpatialDropout2D → Conv: the dropout acts only when the generated model trains."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    h = L.SpatialDropout2D(0.5, name="sdrop")(L.Conv2D(4, 3, padding="same", name="c1")(inputs))
    return keras.Model(inputs, L.Conv2D(2, 1, name="head")(h), name="spatial_dropout"), _x(1, 6, 6, 3)


def spatial_dropout_on_input() -> Built:
    """relu → SpatialDropout2D on the NHWC input: the output shows the dropout mask (whole channels)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 4))
    h = L.SpatialDropout2D(0.5, name="sdrop")(L.ReLU(name="act")(inputs))
    return keras.Model(inputs, h, name="spatial_dropout_on_input"), np.abs(_x(1, 6, 6, 4)) + 0.1
