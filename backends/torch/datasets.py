"""The data of a training job: the bundled digits, or the user's own data set (a dataset SPEC).

`asgnas train` reads batches through one interface, `JobData`, whatever the data is:

- `ArrayData`: an in-memory `Split` (digits, digits_hard), batched by indexing, as the job always did.
- `LoaderData`: the user's data set, read through DataLoaders.

A dataset SPEC (the config's `dataset`) is one of:

- `package.module:attr` or `path/file.py:attr` naming a torch `Dataset` or `DataLoader`, or a callable
  (a function, a Dataset class) returning one, called with `dataset_kwargs`. The callable may also
  return a `(train, validation)` pair, or a dict with the keys `train` and `val` (or `validation`).
- a folder of images, read with torchvision's `ImageFolder` (one subfolder per class). A folder
  that holds `train/` and `val/` (or `validation/`, `valid/`, `test/`) is read as those two parts.

The split rule (NOTE: [Validation split]): a pair, a dict or a train/val folder layout is used as
given. Anything else is one data set, from which a seeded share of `test_fraction` of the samples
(at least one) is held out for validation: a random permutation from `seed`, so the same config
always holds out the same samples. The split is not stratified (the labels of a lazy data set are
unknown until read), unlike the digits split.

Invariants: batches are (inputs, integer class labels); the order of training epoch e depends only
on (seed, e) for every loader this module builds (and for a user's loader with a RandomSampler,
whose generator is seeded per epoch), so `--resume` continues the uninterrupted run's order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    Subset,
)

from asgnas_ir.backends.data import Split
from asgnas_ir.errors import SpecError

VALIDATION_FOLDERS = ("val", "validation", "valid", "test")
# how many validation samples the report compares super- and sub-network logits on (their accuracy
# is measured on every validation sample); enough to catch a wrong sub-network, cheap to hold on the host
COMPARED_SAMPLES = 1024


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch`'s shuffle: a function of (seed, epoch) only, so a resumed run sees
    the order an uninterrupted one would."""
    return seed * 100_003 + epoch


class JobData:
    """Batches for training and validation; what the trainer needs to know about the data."""

    description: str
    num_classes: int
    in_channels: int
    steps_per_epoch: int
    held_out_name: str  # what the held-out part is called in progress and summaries ("test", "val")

    def batches(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches (inputs, labels) of epoch `epoch`, shuffled by `epoch_seed`."""
        raise NotImplementedError

    def held_out(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Validation batches, always in the same order."""
        raise NotImplementedError

    def example(self) -> torch.Tensor:
        """One input with a batch axis of 1 (what `ai.compile` traces with)."""
        raise NotImplementedError

    def latency_batch(self, size: int = 64) -> torch.Tensor:
        """Up to `size` validation inputs, for timing a forward pass."""
        raise NotImplementedError


class ArrayData(JobData):
    """An in-memory split (the bundled digits): the tensors are moved to `device` once."""

    def __init__(self, split: Split, batch_size: int, seed: int, device: torch.device, name: str = "digits") -> None:
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.x_train = torch.from_numpy(split.x_train).to(device)
        self.y_train = torch.from_numpy(split.y_train).to(device)
        self.x_test = torch.from_numpy(split.x_test).to(device)
        self.y_test = torch.from_numpy(split.y_test).to(device)
        self.description = f"{name} ({len(split.x_train)} training, {len(split.x_test)} test images)"
        self.held_out_name = "test"
        self.num_classes = int(max(split.y_train.max(), split.y_test.max())) + 1
        self.in_channels = int(split.x_train.shape[1])
        self.steps_per_epoch = math.ceil(len(split.x_train) / batch_size)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # the permutation is drawn on the host: the same order on every device
        order = torch.randperm(len(self.x_train), generator=torch.Generator(device="cpu").manual_seed(epoch_seed(self.seed, epoch)))
        order = order.to(self.x_train.device)
        for step in range(self.steps_per_epoch):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield self.x_train[index], self.y_train[index]

    def held_out(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.x_test, self.y_test)]

    def example(self) -> torch.Tensor:
        return self.x_test[:1]

    def latency_batch(self, size: int = 64) -> torch.Tensor:
        return self.x_test[:size]


class EpochSampler(Sampler[int]):
    """A permutation of `range(length)` drawn from `epoch_seed(seed, epoch)`; `set_epoch` before each
    epoch (a DataLoader reads its sampler in the main process, so workers do not need to know)."""

    def __init__(self, length: int, seed: int) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator(device="cpu").manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


@dataclass
class _Settings:
    """How this module builds the loaders it makes (a user's DataLoader brings its own)."""

    batch_size: int
    workers: int
    pin_memory: bool
    collate_fn: Any = None


class LoaderData(JobData):
    """A user's data set through a training and a validation DataLoader."""

    def __init__(self, spec: str, train: DataLoader, validation: DataLoader, seed: int, split_rule: str, num_classes: int = 0) -> None:
        self.spec, self.train, self.validation, self.seed = spec, train, validation, seed
        try:
            self.steps_per_epoch = len(train)
        except TypeError:
            raise SpecError(
                f"dataset SPEC '{spec}': the training DataLoader has no length (an IterableDataset without __len__), "
                "which the job needs to count steps per epoch (warm-up and shrink are set in epochs); give the data "
                "set a __len__"
            ) from None
        if self.steps_per_epoch == 0:
            raise SpecError(f"dataset SPEC '{spec}': the training part is empty")
        inputs, _ = self._first(validation, "validation")
        self._example = inputs[:1]
        self.in_channels = int(inputs.shape[1]) if inputs.dim() >= 2 else 1
        self.num_classes = num_classes
        self.held_out_name = "val"
        self.description = f"{spec} ({_count(train)} training, {_count(validation)} validation samples; {split_rule})"

    def _first(self, loader: DataLoader, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            batch = next(iter(loader))
        except StopIteration:
            raise SpecError(f"dataset SPEC '{self.spec}': the {part} part is empty") from None
        return checked_batch(batch, self.spec)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler = self.train.sampler
        if isinstance(sampler, EpochSampler):
            sampler.set_epoch(epoch)
        elif isinstance(sampler, RandomSampler):  # a user's shuffling loader: seeded per epoch too
            sampler.generator = torch.Generator(device="cpu").manual_seed(epoch_seed(self.seed, epoch))
        for batch in self.train:
            yield checked_batch(batch, self.spec)

    def held_out(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.validation:
            yield checked_batch(batch, self.spec)

    def example(self) -> torch.Tensor:
        return self._example

    def latency_batch(self, size: int = 64) -> torch.Tensor:
        parts, count = [], 0
        for inputs, _ in self.held_out():
            parts.append(inputs[: size - count])
            count += len(parts[-1])
            if count >= size:
                break
        return torch.cat(parts)


def _count(loader: DataLoader) -> str:
    try:
        return f"{len(loader.dataset):,}"  # type: ignore[arg-type]
    except TypeError:
        return "?"


def checked_batch(batch: Any, spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` as (inputs, labels), or a SpecError saying what a batch must be."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        inputs, labels = batch
        if isinstance(inputs, torch.Tensor) and isinstance(labels, torch.Tensor) and not labels.is_floating_point() \
                and labels.dim() == 1 and len(labels) == len(inputs):
            return inputs, labels
    raise SpecError(
        f"dataset SPEC '{spec}': each sample must be (input tensor, integer class label), as torchvision's data "
        f"sets and TensorDataset(x, y) give them; a batch came as {_describe(batch)}"
    )


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(_describe(v) for v in value[:3])})"
    return f"a {type(value).__name__}"


# ---- resolving a dataset SPEC ------------------------------------------------------------------


def load_job_data(
    spec: str, *, kwargs: dict[str, Any] | None = None, batch_size: int, test_fraction: float, seed: int,
    workers: int = 0, device: torch.device | None = None, num_classes: int | None = None, image_size: int | None = None,
) -> LoaderData:
    """The user's data named by a dataset SPEC (see the module docstring), as training and
    validation loaders; `num_classes` None reads it from the data set (`classes`, or the labels of a
    TensorDataset)."""
    settings = _Settings(batch_size, workers, pin_memory=device is not None and device.type == "cuda")
    train, validation, rule = _parts(spec, kwargs or {}, image_size)
    if validation is None:
        train, validation = _split(spec, train, test_fraction, seed, settings)
        rule = f"{test_fraction:g} held out for validation, seed {seed}"
    data = LoaderData(spec, _loader(train, settings, seed, shuffle=True), _loader(validation, settings, seed, shuffle=False),
                      seed, rule)
    data.num_classes = num_classes or _classes(spec, train, validation)  # after the samples were found well-formed
    return data


def _parts(spec: str, kwargs: dict[str, Any], image_size: int | None) -> tuple[Any, Any, str]:
    """(training data, validation data or None, how they were told apart)."""
    folder = Path(spec)
    if folder.is_dir():
        if kwargs:
            raise SpecError(f"dataset SPEC '{spec}' is an image folder, so dataset_kwargs cannot be applied")
        return image_folder(folder, image_size)
    if ":" not in spec or folder.suffix.lower() in (".png", ".jpg", ".jpeg"):
        raise SpecError(
            f"dataset SPEC '{spec}' is neither a folder of images nor package.module:attr / path/file.py:attr naming a "
            "torch Dataset or DataLoader (or a callable returning one)"
        )
    from asgnas_ir.spec import resolve_attribute

    target = resolve_attribute(spec)
    if not isinstance(target, (Dataset, DataLoader)) and callable(target):
        try:
            target = target(**kwargs)
        except Exception as exc:  # noqa: BLE001  (whatever the user's builder raises, name the SPEC)
            name = spec.rpartition(":")[2]
            raise SpecError(f"dataset SPEC '{spec}': calling {name}(**{kwargs}) failed: {type(exc).__name__}: {exc}") from None
    elif kwargs:
        raise SpecError(f"dataset SPEC '{spec}' names a data set object, so dataset_kwargs cannot be applied")
    if isinstance(target, dict):
        keys = set(target)
        valid = next((k for k in ("val", "validation") if k in keys), None)
        if "train" not in keys or valid is None:
            raise SpecError(f"dataset SPEC '{spec}' gave a dict with keys {sorted(map(str, keys))}; it needs 'train' and 'val' (or 'validation')")
        return _data(spec, target["train"], "train"), _data(spec, target[valid], valid), f"'{valid}' as given"
    if isinstance(target, (tuple, list)) and len(target) == 2:
        return _data(spec, target[0], "train"), _data(spec, target[1], "validation"), "validation part as given"
    return _data(spec, target, None), None, ""


def _data(spec: str, value: Any, part: str | None) -> Dataset | DataLoader:
    if isinstance(value, (Dataset, DataLoader)):
        return value
    where = f" as its {part} part" if part else ""
    raise SpecError(
        f"dataset SPEC '{spec}' gave {_describe(value)}{where}, not a torch Dataset or DataLoader; return a Dataset, a "
        "DataLoader, a (train, validation) pair of them or a dict with 'train' and 'val'"
    )


def _split(spec: str, data: Dataset | DataLoader, fraction: float, seed: int, settings: _Settings) -> tuple[Dataset, Dataset]:
    """The NOTE: [Validation split] of one data set: a seeded `fraction` (at least one sample) held out."""
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, (RandomSampler, SequentialSampler)) or isinstance(data.dataset, IterableDataset):
            raise SpecError(
                f"dataset SPEC '{spec}' gave one DataLoader with its own sampler (or over an IterableDataset), which cannot "
                "be split into training and validation parts; return a (train_loader, validation_loader) pair"
            )
        # the loader's own batching wins over the config's batch_size for both parts
        settings.batch_size, settings.workers = data.batch_size or settings.batch_size, data.num_workers
        settings.collate_fn, settings.pin_memory = data.collate_fn, data.pin_memory or settings.pin_memory
        data = data.dataset
    if isinstance(data, IterableDataset):
        raise SpecError(
            f"dataset SPEC '{spec}' gave an IterableDataset, which cannot be split into training and validation parts; "
            "return a (train, validation) pair"
        )
    try:
        length = len(data)  # type: ignore[arg-type]
    except TypeError:
        raise SpecError(f"dataset SPEC '{spec}' gave a Dataset without __len__; it cannot be split or counted") from None
    held = max(1, round(length * fraction))
    if length - held < 1:
        raise SpecError(f"dataset SPEC '{spec}' has {length} sample(s): too few to hold {fraction:g} out for validation and train on the rest")
    order = torch.randperm(length, generator=torch.Generator(device="cpu").manual_seed(seed)).tolist()
    return Subset(data, sorted(order[held:])), Subset(data, sorted(order[:held]))


def _loader(data: Dataset | DataLoader, settings: _Settings, seed: int, *, shuffle: bool) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, IterableDataset):
        return DataLoader(data, batch_size=settings.batch_size, num_workers=settings.workers, pin_memory=settings.pin_memory,
                          collate_fn=settings.collate_fn)
    sampler = EpochSampler(len(data), seed) if shuffle else None  # type: ignore[arg-type]
    return DataLoader(
        data, batch_size=settings.batch_size, sampler=sampler, num_workers=settings.workers, pin_memory=settings.pin_memory,
        collate_fn=settings.collate_fn, persistent_workers=settings.workers > 0,
    )


def _classes(spec: str, *parts: Any) -> int:
    """The number of classes the data set declares (`classes`) or a TensorDataset's labels show."""
    counts = []
    for part in parts:
        data = part.dataset if isinstance(part, DataLoader) else part
        while isinstance(data, Subset):
            data = data.dataset
        classes = getattr(data, "classes", None)
        if classes is not None:
            counts.append(len(classes))
        elif isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) >= 2 and len(data.tensors[1]):
            counts.append(int(data.tensors[1].max()) + 1)
        else:
            counts.append(0)
    if not all(counts):
        raise SpecError(
            f"dataset SPEC '{spec}': the data set does not say how many classes it has (no `classes` attribute, not a "
            "TensorDataset); set num_classes in the config"
        )
    return max(counts)


def image_folder(root: Path, image_size: int | None) -> tuple[Dataset, Dataset | None, str]:
    """torchvision ImageFolder(s) under `root`: `root/train` and `root/val` (or validation, valid,
    test) when both exist, else `root` itself (split later). Images are RGB tensors in [0, 1]:
    resized (shorter side) and centre-cropped to `image_size`, or, with None, resized to the first
    image's size so that they batch."""
    try:
        from torchvision import datasets, transforms
    except ImportError:
        raise SpecError(
            f"dataset '{root}' is an image folder, and reading one needs torchvision (pip install torchvision); "
            "or give a SPEC of a callable that returns a torch Dataset"
        ) from None
    train_dir = root / "train"
    valid_dir = next((root / name for name in VALIDATION_FOLDERS if (root / name).is_dir()), None)
    layout = [train_dir, valid_dir] if train_dir.is_dir() and valid_dir is not None else [root]
    parts = []
    for folder in layout:
        try:
            parts.append(datasets.ImageFolder(str(folder)))
        except (FileNotFoundError, RuntimeError) as exc:
            raise SpecError(
                f"image folder '{folder}' has no images in class subfolders ({exc}); lay it out as "
                f"{folder}/<class name>/<image>.png, one subfolder per class"
            ) from None
    if len(parts) == 2 and parts[0].classes != parts[1].classes:
        raise SpecError(
            f"image folder '{root}': {train_dir.name}/ has classes {parts[0].classes}, {valid_dir.name}/ has "  # type: ignore[union-attr]
            f"{parts[1].classes}; both parts need the same class subfolders"
        )
    if image_size is not None:
        resize = [transforms.Resize(image_size), transforms.CenterCrop(image_size)]
    else:
        from PIL import Image

        with Image.open(parts[0].samples[0][0]) as first:
            width, height = first.size
        resize = [transforms.Resize((height, width))]
    transform = transforms.Compose([*resize, transforms.ToTensor()])
    for part in parts:
        part.transform = transform
    if len(parts) == 2:
        return parts[0], parts[1], f"{train_dir.name}/ and {valid_dir.name}/ folders"  # type: ignore[union-attr]
    return parts[0], None, ""


__all__ = ["COMPARED_SAMPLES", "ArrayData", "EpochSampler", "JobData", "LoaderData", "checked_batch", "epoch_seed",
           "image_folder", "load_job_data"]
