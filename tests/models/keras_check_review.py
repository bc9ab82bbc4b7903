"""Replicas for issue 14's `check` findings (6, 7, 8, 13): tiny, seeded, inference-only models.

Keras builders return a fresh model each call (weights fixed by `keras.utils.set_random_seed`);
torch builders return modules in eval mode.
"""

from __future__ import annotations

import keras
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


def _seeded() -> None:
    keras.utils.set_random_seed(0)


def approx_gelu(x):  # noqa: ANN001, ANN201  (a user activation, shaped like keras.activations.gelu)
    return keras.activations.gelu(x, approximate=True)


approx_gelu.__name__ = "gelu"  # what a user's own `def gelu(x)` is called: the name alone says nothing


def user_gelu() -> keras.Model:
    """Finding 6: an activation function of the user's, named like Keras' exact gelu."""
    _seeded()
    x = keras.Input((16,), name="x")
    h = keras.layers.Dense(32, activation=approx_gelu, name="fc1")(x)
    return keras.Model(x, keras.layers.Dense(4, name="fc2")(h), name="user_gelu")


def with_lambda() -> keras.Model:
    """Finding 6: a Lambda layer (compile refuses it by name; clone_model failed on it first)."""
    _seeded()
    x = keras.Input((8,), name="x")
    h = keras.layers.Dense(8, name="fc")(x)
    return keras.Model(x, keras.layers.Lambda(lambda t: t * 2.0, name="double")(h), name="with_lambda")


def lambda_activation() -> keras.Model:
    """Finding 6: Activation(lambda ...)."""
    _seeded()
    x = keras.Input((8,), name="x")
    h = keras.layers.Dense(8, name="fc")(x)
    return keras.Model(x, keras.layers.Activation(lambda t: t * 0.5, name="halve")(h), name="lambda_activation")


class SameConv(keras.layers.Conv2D):
    """A Conv2D subclass with its own constructor arguments (get_config cannot rebuild it) and no
    other override: it computes a plain 3x3 'same' conv."""

    def __init__(self, width: int, **kwargs) -> None:  # noqa: ANN003
        super().__init__(width, 3, padding="same", **kwargs)


def conv_subclass() -> keras.Model:
    """Finding 6: a conv subclass with its own __init__ (clone_model raised a TypeError on it)."""
    _seeded()
    x = keras.Input((8, 8, 3), name="image")
    h = SameConv(8, name="conv1")(x)
    h = keras.layers.ReLU(name="relu")(h)
    h = SameConv(4, name="conv2")(h)
    return keras.Model(x, keras.layers.GlobalAveragePooling2D(name="pool")(h), name="conv_subclass")


class OneBranch(nn.Module):
    """Finding 7: exactly one erasable structure (the residual branch)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 8)
        self.branch = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(h + self.branch(h))


def one_branch() -> nn.Module:
    torch.manual_seed(0)
    return OneBranch().eval()


def keras_one_branch() -> keras.Model:
    """Finding 7, Keras: the same single residual branch."""
    _seeded()
    x = keras.Input((6,), name="x")
    h = keras.layers.Dense(8, name="stem")(x)
    b = keras.layers.Dense(8, activation="relu", name="branch1")(h)
    b = keras.layers.Dense(8, name="branch2")(b)
    y = keras.layers.Add(name="add")([h, b])
    return keras.Model(x, keras.layers.Dense(3, name="head")(y), name="keras_one_branch")


class OneChannel(nn.Module):
    """Finding 7: one prunable channel, which no selection may remove (its value would be empty)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 1)
        self.fc2 = nn.Linear(1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def one_channel() -> nn.Module:
    torch.manual_seed(0)
    return OneChannel().eval()


def dict_io(input_names: tuple[str, str] = ("b", "a")) -> keras.Model:
    """Finding 8: inputs and outputs are dicts whose declared order is not the sorted one, with equal
    shapes, so a swap by position gives wrong numbers instead of an error. `input_names` names the
    Inputs (the dict keys stay "b" and "a")."""
    _seeded()
    b = keras.Input((6,), name=input_names[0])
    a = keras.Input((6,), name=input_names[1])
    hb = keras.layers.Dense(8, activation="relu", name="enc_b")(b)
    ha = keras.layers.Dense(8, name="enc_a")(a)
    joint = keras.layers.Concatenate(name="cat")([hb, ha])
    z = keras.layers.Dense(5, name="z_head")(joint)
    y = keras.layers.Dense(2, name="y_head")(keras.layers.Multiply(name="mul")([hb, ha]))
    return keras.Model({"b": b, "a": a}, {"z": z, "y": y}, name="dict_io")


def dict_inputs_example(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # declared order (b, a), not the sorted one
    return {"b": rng.standard_normal((2, 6)).astype("float32"), "a": rng.standard_normal((2, 6)).astype("float32")}


def softmax_head(classes: int = 2000) -> keras.Model:
    """Finding 13: a classifier whose output is a wide softmax (every probability small)."""
    _seeded()
    x = keras.Input((16,), name="x")
    h = keras.layers.Dense(32, activation="relu", name="fc")(x)
    return keras.Model(x, keras.layers.Dense(classes, activation="softmax", name="classes")(h), name="softmax_head")


class TorchSoftmaxHead(nn.Module):
    """Finding 13, torch: a model ending in F.softmax over many classes."""

    def __init__(self, classes: int = 2000) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 32)
        self.out = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.out(torch.relu(self.fc(x))), dim=-1)


def torch_softmax_head(classes: int = 2000) -> nn.Module:
    torch.manual_seed(0)
    return TorchSoftmaxHead(classes).eval()
