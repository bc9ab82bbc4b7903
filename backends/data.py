"""Data the project ships or makes: scikit-learn's digits, split reproducibly (no downloads).

Two data sets, chosen by name (`DATA_SETS`, the `data` field of the training and search configs):

- `digits`: the 1,797 8x8 images as they come. Easy: a network with 5 % of SuperResNet's FLOPs
  still scores ~98 %, so accuracy hardly depends on size.
- `digits_hard`: the same 1,797 images (same labels, same order) redrawn on a 16x16 canvas with a
  random affine distortion each (rotation, scale, shear, shift), a thicker or thinner stroke for
  two thirds of them, and additive Gaussian noise. The distortions are mild enough to leave the
  digit recognisable (a large, shifted one can lose a stroke end at the canvas edge), so labels
  stay right; what changes is how much capacity the invariances take, so accuracy depends
  on the architecture (a linear classifier: 94 % on digits, 36 % here; SuperResNet's sub-networks
  62-90 % here against 98-99 % on digits, see BENCHMARKS.md).

Invariants: a data set is a fixed array, independent of the split seed (as a downloaded data set
would be); the seed only chooses the stratified train/test split. Inputs are standardised with the
training part's mean and standard deviation only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from asgnas_ir.errors import SpecError

DataName = Literal["digits", "digits_hard"]
DATA_SETS: tuple[str, ...] = ("digits", "digits_hard")

# The distortions of `digits_hard` (fixed: changing one changes the data set, so the benchmarks too).
HARD_SIZE = 16
HARD_SEED = 20_240_611
HARD_ROTATION_DEG = 20.0
HARD_SCALE = (0.7, 1.05)  # times HARD_SIZE / 8: the digit fills 70-105 % of the canvas
HARD_SHEAR = 0.25
HARD_SHIFT_PX = 2.0
HARD_NOISE_STD = 0.1  # on pixel values in [0, 1]


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, *self.x_train.shape[1:])


def load_split(data: str = "digits", test_fraction: float = 0.25, seed: int = 0) -> Split:
    """The data set `data` (one of `DATA_SETS`) as float32 (N, 1, H, W), stratified train/test split."""
    if data == "digits":
        images, labels = _digits()
    elif data == "digits_hard":
        images, labels = digits_hard()
    else:
        raise SpecError(f"unknown data set '{data}'; choose one of {', '.join(DATA_SETS)}")
    return _split(images, labels, test_fraction, seed)


def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> Split:
    """The 1,797 8x8 digit images as float32 (N, 1, 8, 8), stratified train/test split."""
    return load_split("digits", test_fraction, seed)


def _split(images: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int) -> Split:
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    # Standardise with training statistics only, so the test set stays unseen.
    mean, std = float(x_train.mean()), float(x_train.std())
    return Split((x_train - mean) / std, y_train, (x_test - mean) / std, y_test)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 1, 8, 8) in [0, 1], labels) of scikit-learn's digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images.astype(np.float32) / 16.0)[:, None, :, :], digits.target.astype(np.int64)


@lru_cache(maxsize=1)
def _digits_hard_cached() -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    images, labels = _digits()
    rng = np.random.default_rng(HARD_SEED)
    out = np.empty((len(images), 1, HARD_SIZE, HARD_SIZE), np.float32)
    source_centre = np.full(2, 3.5)
    canvas_centre = np.full(2, (HARD_SIZE - 1) / 2)
    for i, image in enumerate(images[:, 0]):
        # One draw per image, in a fixed order: image i's distortion never depends on the split.
        angle = np.deg2rad(rng.uniform(-HARD_ROTATION_DEG, HARD_ROTATION_DEG))
        scale = rng.uniform(*HARD_SCALE) * HARD_SIZE / 8
        shear = rng.uniform(-HARD_SHEAR, HARD_SHEAR)
        shift = rng.uniform(-HARD_SHIFT_PX, HARD_SHIFT_PX, 2)
        stroke = rng.integers(3)  # 0 as drawn, 1 thicker, 2 thinner
        noise = rng.normal(0.0, HARD_NOISE_STD, (HARD_SIZE, HARD_SIZE))
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        forward = scale * rotation @ np.array([[1.0, shear], [0.0, 1.0]])  # source → canvas
        inverse = np.linalg.inv(forward)
        # affine_transform maps each canvas pixel o to the source pixel inverse·o + offset.
        offset = source_centre - inverse @ (canvas_centre + shift)
        drawn = ndimage.affine_transform(image, inverse, offset=offset, output_shape=(HARD_SIZE,) * 2, order=1, mode="constant")
        if stroke == 1:
            drawn = ndimage.grey_dilation(drawn, size=(2, 2))
        elif stroke == 2:
            drawn = 0.5 * (drawn + ndimage.grey_erosion(drawn, size=(2, 2)))
        out[i, 0] = drawn + noise
    out.flags.writeable = False  # shared by every caller through the cache
    return out, labels


def digits_hard() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 1, 16, 16) float32, labels) of `digits_hard`: the same every call, in every process."""
    images, labels = _digits_hard_cached()
    return images, labels.copy()


__all__ = ["DATA_SETS", "DataName", "Split", "digits_hard", "load_digits_split", "load_split"]
