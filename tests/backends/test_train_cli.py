"""`asgnas train` on the user's own job: a dataset SPEC, an image folder, --device, --amp, throughput."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from asgnas_ir.backends.torch.datasets import LoaderData, load_job_data
from asgnas_ir.backends.torch.trainer import TrainConfig, _comparable, run_training
from asgnas_ir.cli import main

HERE = "tests.backends.test_train_cli"


# ---- what the SPECs below name -----------------------------------------------------------------


def tiny_dataset(samples: int = 48, classes: int = 3) -> TensorDataset:
    """Learnable 1x8x8 inputs: class c lights up row band c, plus noise."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(samples) % classes
    x = 0.3 * torch.randn(samples, 1, 8, 8, generator=generator)
    for c in range(classes):
        x[labels == c, :, 2 * c : 2 * c + 2, :] += 1.0
    return TensorDataset(x, labels)


def tiny_pair() -> tuple[TensorDataset, TensorDataset]:
    return tiny_dataset(40), tiny_dataset(12)


def tiny_loader() -> DataLoader:
    return DataLoader(tiny_dataset(40), batch_size=5, shuffle=True)


def not_a_dataset() -> list[int]:
    return [1, 2, 3]


def unlabelled() -> TensorDataset:
    return TensorDataset(torch.zeros(10, 1, 8, 8))


def float_labels() -> TensorDataset:
    return TensorDataset(torch.zeros(10, 1, 8, 8), torch.zeros(10))


class TinyNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def tiny_net(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return TinyNet(num_classes, in_channels)


# ---- helpers -----------------------------------------------------------------------------------

FAST = {"supernet": f"{HERE}:tiny_net", "mode": "prune", "epochs": 2, "warmup_epochs": 1, "batch_size": 16, "baseline": False}


def _config_file(tmp_path: Path, **fields: object) -> Path:
    path = tmp_path / "train.json"
    path.write_text(json.dumps({**FAST, "out": str(tmp_path / "out"), **fields}))
    return path


def _images(root: Path, classes: dict[str, int], sizes: tuple[tuple[int, int], ...] = ((10, 12), (12, 10))) -> None:
    """`count` PNGs per class folder under `root`, each class its own colour, sizes varying."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            w, h = sizes[i % len(sizes)]
            pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            pixels[..., k % 3] += 180
            Image.fromarray(pixels).save(root / name / f"{i}.png")


# ---- whole runs --------------------------------------------------------------------------------


def test_train_on_a_dataset_spec_with_a_model_spec_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`asgnas train CONFIG --device cpu --dataset MODULE:CALLABLE`: trains the SPEC'd model on the
    callable's TensorDataset (a quarter held out), writes the sub-network and a report that names the
    device, the data and the throughput."""
    config = _config_file(tmp_path)
    code = main(["train", str(config), "--device", "cpu", "--dataset", f"{HERE}:tiny_dataset"])
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    assert code == 0 and report["equivalent"] is True
    assert report["device"] == "cpu" and report["amp"] == "off"
    assert report["config"]["dataset"] == f"{HERE}:tiny_dataset"
    assert "36 training, 12 validation samples" in report["data"] and "0.25 held out" in report["data"]
    assert report["train_samples_per_second"] > 0
    assert len(report["history"]) == 2
    assert (out / "model.py").exists() and (out / "weights.safetensors").exists()
    assert "samples/s" in capsys.readouterr().out  # the progress bar's throughput


def test_train_on_an_image_folder_in_bf16(tmp_path: Path) -> None:
    """An image folder (class subfolders of PNGs of two sizes) read with ImageFolder, resized to the
    first image's size, trained under bfloat16 autocast on the CPU; the generated sub-network (float32)
    matches the trained super-network."""
    _images(tmp_path / "images", {"red": 12, "green": 12})
    config = TrainConfig(**FAST, dataset=str(tmp_path / "images"), amp="bf16", device="cpu", out=str(tmp_path / "out"))
    console = Console(file=io.StringIO(), width=160)
    report = run_training(config, console=console)
    assert report["equivalent"] is True and report["amp"] == "bf16"
    assert "18 training, 6 validation samples" in report["data"]
    weights = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)["model"]
    assert weights["features.0.weight"].shape[1] == 3  # RGB images: in_channels from the data
    assert weights["head.weight"].shape[0] == 2  # two class folders
    assert weights["head.weight"].dtype == torch.float32  # autocast keeps float32 weights
    assert "samples/s" in console.file.getvalue()


def test_fp16_trains_with_a_grad_scaler_whose_state_is_checkpointed(tmp_path: Path) -> None:
    """--amp fp16 scales the loss (a GradScaler) and checkpoints the scaler, so --resume continues it."""
    config = TrainConfig(**FAST, dataset=f"{HERE}:tiny_pair", amp="fp16", device="cpu", out=str(tmp_path))
    report = run_training(config, console=Console(file=io.StringIO()))
    assert report["equivalent"] is True
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0
    assert "validation part as given" in report["data"]


# ---- the CLI's options and its errors ----------------------------------------------------------


def test_device_cuda_without_cuda_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["train", str(_config_file(tmp_path)), "--device", "cuda"])
    assert code == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_a_bad_device_or_amp_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(_config_file(tmp_path)), "--device", "gpu"]) == 2
    assert "device must be auto, cpu, cuda, cuda:N or mps, not 'gpu'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(_config_file(tmp_path)), "--amp", "fp8"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no/such/folder", "neither a folder of images nor package.module:attr / path/file.py:attr"),
        (f"{HERE}:missing", f"'{HERE}' has no attribute 'missing'"),
        (f"{HERE}:not_a_dataset", "gave a list of 3 (a int, a int, a int), not a torch Dataset or DataLoader"),
        (f"{HERE}:unlabelled", "each sample must be (input tensor, integer class label)"),
        (f"{HERE}:float_labels", "each sample must be (input tensor, integer class label)"),
        ("no_such_module_xyz:make", "SPEC module 'no_such_module_xyz' does not import"),
    ],
)
def test_a_bad_dataset_spec_is_one_clear_error(spec: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each way a dataset SPEC can be wrong ends with exit code 2 and a message naming the SPEC."""
    code = main(["train", str(_config_file(tmp_path)), "--device", "cpu", "--dataset", spec])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_an_image_folder_without_class_folders_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flat").mkdir()
    code = main(["train", str(_config_file(tmp_path)), "--device", "cpu", "--dataset", str(tmp_path / "flat")])
    err = capsys.readouterr().err
    assert code == 2 and "has no images in class subfolders" in err and "<class name>/<image>.png" in err


def test_data_and_dataset_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either data .* or dataset"):
        TrainConfig(**FAST, data="digits_hard", dataset=f"{HERE}:tiny_dataset")
    with pytest.raises(ValueError, match="apply to a dataset SPEC"):
        TrainConfig(**FAST, num_classes=3)


# ---- compatibility -----------------------------------------------------------------------------


def test_an_old_config_file_still_loads_with_the_digits_job_as_default(tmp_path: Path) -> None:
    """A config written before device, amp and dataset existed means what it meant: digits, float32,
    and the best device there is."""
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"supernet": "stacked_unets", "epochs": 4, "warmup_epochs": 1, "out": "x"}))
    config = TrainConfig.from_file(path)
    assert (config.data, config.dataset, config.amp, config.device) == ("digits", None, "off", "auto")


def test_a_checkpoint_written_before_the_new_fields_resumes() -> None:
    """A checkpoint records the config it ran with; fields added since then count at their defaults,
    and where the run happens (device, workers, out) never blocks a resume."""
    config = TrainConfig(supernet="stacked_unets", epochs=4, warmup_epochs=1, device="cpu", workers=0)
    old = config.model_dump(exclude={"out", "device", "amp", "dataset", "dataset_kwargs", "num_classes", "image_size",
                                     "workers", "model_kwargs"})
    assert _comparable(old) == _comparable(config.model_dump())
    assert _comparable(old) != _comparable(config.model_copy(update={"amp": "bf16"}).model_dump())


# ---- the split rule ----------------------------------------------------------------------------


def _load(spec: str, **options: object) -> LoaderData:
    settings = {"batch_size": 8, "test_fraction": 0.25, "seed": 0, **options}
    return load_job_data(spec, **settings)  # type: ignore[arg-type]


def test_one_dataset_is_split_by_a_seeded_permutation() -> None:
    """A single data set holds out round(fraction * n) samples chosen by `seed`: the same samples for the
    same seed, others for another seed; training batches follow (seed, epoch) only."""
    first, again, other = _load(f"{HERE}:tiny_dataset"), _load(f"{HERE}:tiny_dataset"), _load(f"{HERE}:tiny_dataset", seed=1)
    held = first.validation.dataset.indices  # type: ignore[attr-defined]
    assert len(held) == 12 and held == again.validation.dataset.indices  # type: ignore[attr-defined]
    assert held != other.validation.dataset.indices  # type: ignore[attr-defined]
    assert not set(held) & set(first.train.dataset.indices)  # type: ignore[attr-defined]
    assert (first.num_classes, first.in_channels, first.steps_per_epoch) == (3, 1, 5)
    epoch_1 = [y.tolist() for _, y in first.batches(1)]
    assert epoch_1 == [y.tolist() for _, y in again.batches(1)]
    assert epoch_1 != [y.tolist() for _, y in first.batches(2)]


def test_a_pair_a_dict_and_a_train_val_folder_are_used_as_given(tmp_path: Path) -> None:
    pair = _load(f"{HERE}:tiny_pair")
    assert len(pair.validation.dataset) == 12 and "as given" in pair.description  # type: ignore[arg-type]
    _images(tmp_path / "train", {"a": 3, "b": 3})
    _images(tmp_path / "val", {"a": 2, "b": 2})
    folders = _load(str(tmp_path), image_size=6)
    assert "train/ and val/ folders" in folders.description
    assert folders.example().shape == (1, 3, 6, 6) and folders.num_classes == 2


def test_a_single_loader_keeps_its_own_batching_and_is_split() -> None:
    data = _load(f"{HERE}:tiny_loader")
    assert data.train.batch_size == 5 and data.steps_per_epoch == 6  # 30 of 40 samples, batches of 5
    assert len(data.validation.dataset) == 10  # type: ignore[arg-type]
