"""Small super-networks for erasing-mode search on 1x8x8 digit images (scikit-learn ``load_digits``).

Each module exposes ``build(num_classes=10, in_channels=1)`` and ``INPUT_SHAPE``; ``SUPERNETS``
maps a short name to its ``build``. Every network holds several removal structures: chains of
trainable operators that end with a BatchNorm and feed only an additive joint (``+`` or a channel
``torch.cat``), so erasing one leaves an input-to-output path alive. See each module's docstring
for the list.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from asgnas_ir.examples.supernets import darts_cell, regnet_super, stacked_unets, super_resnet

SUPERNETS: dict[str, Callable[..., nn.Module]] = {
    "stacked_unets": stacked_unets.build,
    "super_resnet": super_resnet.build,
    "darts_cell": darts_cell.build,
    "regnet_super": regnet_super.build,
}

__all__ = ["SUPERNETS", "darts_cell", "regnet_super", "stacked_unets", "super_resnet"]
