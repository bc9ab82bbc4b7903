"""The CONFIG files of `asgnas search ag|random`: pydantic models, unknown fields refused.

A search CONFIG names the super-network, how each candidate is evaluated (`evaluator`), the number
of evaluations (`budget`), the seed and, optionally, a latency limit. Each searcher extends
`SearchConfig` with its own fields. Nothing here imports a framework.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from asgnas_ir.backends.data import DataName
from asgnas_ir.config_file import load_config


class EvaluatorSettings(BaseModel):
    """How a candidate is trained and measured (the `evaluator` object of a search CONFIG)."""

    model_config = ConfigDict(extra="forbid")

    data: DataName = Field("digits", description="digits (8x8) or digits_hard (16x16, distorted; see asgnas_ir.backends.data)")
    epochs: int = Field(1, ge=1, description="epochs of SGD per candidate")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    test_fraction: float = Field(0.25, gt=0, lt=1, description="held-out test part of the data (reported, never selected on)")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="validation part carved from the training part (selection)")
    train_samples: int | None = Field(None, ge=1, description="train on only this many of the training images (quick runs)")
    inherit: bool = Field(True, description="start candidates from super-network weights trained once per search")
    supernet_epochs: int = Field(10, ge=1, description="epochs of the super-network training when inherit is on")
    latency: bool = Field(False, description="measure CPU latency of each generated sub-network")
    latency_batch: int = Field(64, ge=1, description="images per timed forward pass")
    latency_repeats: int = Field(20, ge=1)
    latency_table: str | None = Field(
        None,
        description="a latency table of the super-network (`asgnas profile`, JSON): each candidate's latency is the "
        "table's estimate for it instead of a timing of its generated code (turns latency on)",
    )


class SearchConfig(BaseModel):
    """Fields every evaluating searcher (ag, random) shares."""

    model_config = ConfigDict(extra="forbid")

    supernet: str = Field("super_resnet", description="a name in asgnas_ir.examples.supernets.SUPERNETS or a SPEC")
    framework: Literal["torch"] = Field("torch", description="who trains the candidates (torch only so far)")
    budget: int = Field(50, ge=1, description="architectures evaluated in all")
    seed: int = 0
    latency_limit_ms: float | None = Field(
        None, gt=0, description="prefer architectures whose generated code runs a batch within this (turns latency on)"
    )
    evaluator: EvaluatorSettings = Field(default_factory=EvaluatorSettings)
    out: str = "search-out"

    @model_validator(mode="after")
    def _latency_limit_needs_latency(self) -> SearchConfig:
        # A limit is meaningless without measurements: switch them on rather than fail.
        if self.latency_limit_ms is not None and not self.evaluator.latency:
            self.evaluator = self.evaluator.model_copy(update={"latency": True})
        return self


__all__ = ["EvaluatorSettings", "SearchConfig", "load_config"]
