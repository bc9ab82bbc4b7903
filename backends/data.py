"""Data the project ships or makes: scikit-learn's digits, split reproducibly (no downloads)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, *self.x_train.shape[1:])


def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> Split:
    """The 1,797 8x8 digit images as float32 (N, 1, 8, 8) in [0, 1], stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    # Standardise with training statistics only, so the test set stays unseen.
    mean, std = float(x_train.mean()), float(x_train.std())
    return Split((x_train - mean) / std, y_train, (x_test - mean) / std, y_test)
