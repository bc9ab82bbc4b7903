"""The data sets the project makes: digits as shipped and the distorted `digits_hard`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asgnas_ir.backends import data
from asgnas_ir.backends.data import DATA_SETS, digits_hard, load_digits_split, load_split
from asgnas_ir.errors import SpecError


def test_digits_hard_is_the_same_array_every_time_it_is_made() -> None:
    first, labels = digits_hard()
    data._digits_hard_cached.cache_clear()  # draw it again from scratch, as a new process would
    again, labels_again = digits_hard()
    assert again is not first
    assert np.array_equal(first, again) and np.array_equal(labels, labels_again)
    assert first.shape == (1797, 1, 16, 16) and first.dtype == np.float32
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0, 0, 0] = 1.0  # the cached array cannot be changed by one caller for the others


def test_digits_hard_keeps_the_digits_labels_and_their_class_balance() -> None:
    from sklearn.datasets import load_digits

    _, labels = digits_hard()
    assert np.array_equal(labels, load_digits().target)
    counts = np.bincount(labels)
    assert counts.size == 10 and counts.min() >= 174 and counts.max() <= 183


@pytest.mark.parametrize("name", DATA_SETS)
def test_splits_are_stratified_standardised_on_train_only_and_seeded(name: str) -> None:
    split = load_split(name, test_fraction=0.25, seed=0)
    size = 8 if name == "digits" else 16
    assert split.x_train.shape == (1347, 1, size, size) and split.x_test.shape == (450, 1, size, size)
    assert split.input_shape == (1, 1, size, size)
    # Stratified: every class has its share of the test part, to within one image.
    share = np.bincount(split.y_test, minlength=10) / np.bincount(np.concatenate([split.y_train, split.y_test]))
    assert np.all(np.abs(share - 0.25) * 183 <= 1.0)
    assert abs(float(split.x_train.mean())) < 1e-4 and abs(float(split.x_train.std()) - 1) < 1e-4
    assert abs(float(split.x_test.mean())) > 1e-4  # test statistics were not used
    same, other = load_split(name, 0.25, seed=0), load_split(name, 0.25, seed=1)
    assert np.array_equal(same.x_test, split.x_test) and np.array_equal(same.y_train, split.y_train)
    assert not np.array_equal(other.y_test, split.y_test)


def test_digits_stays_what_load_digits_split_always_returned() -> None:
    named, plain = load_split("digits", 0.25, 3), load_digits_split(0.25, 3)
    assert np.array_equal(named.x_train, plain.x_train) and np.array_equal(named.y_test, plain.y_test)


def test_digits_hard_defeats_a_linear_classifier_but_keeps_the_label_information() -> None:
    """What makes it worth having: a linear model reads digits almost perfectly, but digits_hard
    needs invariances a linear model lacks (capacity), while still being far above chance."""
    from sklearn.linear_model import RidgeClassifier

    def linear_accuracy(name: str) -> float:
        split = load_split(name, 0.25, 0)
        flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
        return RidgeClassifier().fit(flat(split.x_train), split.y_train).score(flat(split.x_test), split.y_test)

    assert linear_accuracy("digits") > 0.9
    assert 0.2 < linear_accuracy("digits_hard") < 0.6


def test_an_unknown_data_set_is_refused_by_name_in_code_and_in_configs(tmp_path: Path) -> None:
    from asgnas_ir.backends.torch.gold import GoldConfig
    from asgnas_ir.backends.training import TrainConfig

    with pytest.raises(SpecError, match=r"unknown data set 'mnist'; choose one of digits, digits_hard"):
        load_split("mnist")
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"data": "mnist"}))
    for cls in (TrainConfig, GoldConfig):
        with pytest.raises(SpecError, match=r"(?s)c\.json.*data.*'digits' or 'digits_hard'"):
            cls.from_file(config)
    assert TrainConfig().data == GoldConfig().data == "digits"  # the demo and old configs keep digits


@pytest.mark.parametrize("name", ["stacked_unets", "super_resnet", "darts_cell", "regnet_super"])
def test_every_supernet_takes_digits_hard_images_and_keeps_its_removal_structures(name: str) -> None:
    import torch

    import asgnas_ir as ai
    from asgnas_ir.examples.supernets import SUPERNETS

    split = load_split("digits_hard")
    torch.manual_seed(0)
    model = SUPERNETS[name](num_classes=10, in_channels=1).eval()
    x = torch.from_numpy(split.x_test[:3])
    with torch.no_grad():
        assert model(x).shape == (3, 10)
    small = ai.search_space(ai.compile(model, torch.from_numpy(load_split("digits").x_test[:1])), mode="erase")
    large = ai.search_space(ai.compile(model, x[:1]), mode="erase")
    assert len(large.groups) == len(small.groups) > 0  # the same candidates at either input size
