"""H2SPG under torch.distributed: the optimizer's discrete decisions, identical on every rank.

Under `DistributedDataParallel` every rank starts from rank 0's weights and steps with the same
averaged gradient, so in exact arithmetic every rank would make the same choices anyway. The
optimizer still does not rely on that: a decision that switches a group's fate (which groups are
redundant, which are projected to zero this step) is taken from rank 0 and broadcast, so the ranks
cannot drift apart on a near-tie, and what must already agree (the search space, the redundancy
scores at selection, a loaded redundant set) is all-gathered and compared, so a job whose ranks are
not training the same model fails with `DistributedStateError` at the first decision instead of
producing a different sub-network per rank.

Invariant: every method of `RankSync` is a collective. The optimizer calls them only from
`__init__`, `step`, `finalize` (before selection) and `load_state_dict`, which every rank calls in
the same order in a data-parallel loop.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from asgnas_ir.errors import AsgnasError, DistributedStateError
from asgnas_ir.frontends import unwrap_torch_parallel

# Scores computed from bit-identical gradients agree exactly; this only absorbs a reduction order
# that differs between ranks, far below what tells two genuinely different models apart.
SCORE_RTOL = 1e-6


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's own module inside `DistributedDataParallel` / `DataParallel` wrappers.

    The wrapper names its parameters `module.<path>`; the search space, compiled from the bare
    model, names them `<path>`. The wrapper shares the module's tensors, so binding to the inner
    module binds the very tensors DDP synchronises. `ai.compile` unwraps the same way.
    """
    return unwrap_torch_parallel(model)


def space_fingerprint(space: Any) -> int:
    """A 32-bit digest of the groups (ids, kinds, sliced params, axes and indices)."""
    digest = 0
    for group in space.groups:
        digest = zlib.crc32(f"{group.id}:{group.kind}".encode(), digest)
        for s in group.slices:
            digest = zlib.crc32(f"|{space.param_sources.get(s.param, s.param)}:{s.axis}:{s.kind}:".encode(), digest)
            digest = zlib.crc32(np.asarray(s.indices, np.int64).tobytes(), digest)
    return digest


class RankSync:
    """Rank 0's decisions for every rank of `group`, and agreement checks (all collectives).

    Args:
        group: the process group (None: the default group).
        owner: the optimizer's class name, for error messages.
    """

    def __init__(self, group: Any, owner: str) -> None:
        self.group, self.owner = group, owner
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)
        self.root = dist.get_global_rank(group, 0) if group is not None else 0
        # NCCL moves only CUDA tensors; gloo and the others take CPU tensors
        backend = str(dist.get_backend(group))
        self.device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")

    @classmethod
    def resolve(cls, sync_group: Any, owner: str) -> RankSync | None:
        """The sync for the optimizer's `sync_group` option: "auto" (the default group when
        torch.distributed is initialised, else none), None (never), or a ProcessGroup."""
        if sync_group is None:
            return None
        initialised = dist.is_available() and dist.is_initialized()
        if isinstance(sync_group, str):
            if sync_group != "auto":
                raise AsgnasError(f"{owner}: sync_group must be 'auto', None or a torch.distributed ProcessGroup, got '{sync_group}'")
            return cls(None, owner) if initialised else None
        if not initialised:
            raise AsgnasError(f"{owner}: sync_group was given but torch.distributed is not initialised; call init_process_group first")
        return cls(sync_group, owner)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """(ranks, *values.shape): every rank's `values`, in rank order."""
        local = values.detach().to(self.device)
        rows = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(rows, local, group=self.group)
        return torch.stack(rows).cpu()

    def from_root(self, values: torch.Tensor) -> torch.Tensor:
        """Rank 0's `values` (same shape and dtype on every rank)."""
        buffer = values.detach().to(self.device).clone()
        dist.broadcast(buffer, src=self.root, group=self.group)
        return buffer.to(values.device)

    def flags(self, flags: list[bool]) -> list[bool]:
        """Rank 0's per-group yes/no decisions."""
        return self.from_root(torch.tensor(flags, dtype=torch.uint8)).bool().tolist()

    def choice(self, chosen: list[int] | None, k: int) -> list[int]:
        """Rank 0's `chosen` group ids (at most `k`, in order); other ranks pass None."""
        padded = torch.full((k,), -1, dtype=torch.int64)
        if chosen:
            padded[: len(chosen)] = torch.tensor(chosen, dtype=torch.int64)
        return [int(g) for g in self.from_root(padded).tolist() if g >= 0]

    def same_everywhere(self, values: list[int], what: str, remedy: str) -> None:
        """Raise DistributedStateError unless every rank passes the same `values`."""
        check_identical(self.gather(torch.tensor(values, dtype=torch.int64)).numpy(), what, self.owner, remedy)

    def scores(self, local: torch.Tensor) -> torch.Tensor:
        """Rank 0's redundancy scores, after checking that every rank's agree within SCORE_RTOL."""
        rows = self.gather(local.to(torch.float64)).numpy()
        check_close(rows, "redundancy scores", self.owner, SCORE_RTOL)
        return torch.as_tensor(rows[0], dtype=local.dtype, device=local.device)


_REMEDY_MODEL = (
    "wrap the model in torch.nn.parallel.DistributedDataParallel before training (it starts every rank "
    "from rank 0's weights and averages the gradients), and build the optimizer on every rank; "
    "pass sync_group=None if the ranks train different models on purpose"
)


def check_identical(rows: np.ndarray, what: str, owner: str, remedy: str) -> None:
    """Rows are per-rank values; raise DistributedStateError naming the first rank that differs from rank 0."""
    for rank in range(1, len(rows)):
        if not np.array_equal(rows[rank], rows[0]):
            raise DistributedStateError(
                f"{owner}: rank {rank}'s {what} ({rows[rank].tolist()}) differ from rank 0's ({rows[0].tolist()}); {remedy}"
            )


def check_close(rows: np.ndarray, what: str, owner: str, rtol: float) -> None:
    """Rows are per-rank float vectors; raise DistributedStateError if a rank's differ from rank 0's by more than `rtol`."""
    scale = max(float(np.abs(rows[0]).max(initial=0.0)), 1e-12)
    for rank in range(1, len(rows)):
        diff = np.abs(rows[rank] - rows[0])
        if diff.size and float(diff.max()) > rtol * scale:
            worst = int(diff.argmax())
            raise DistributedStateError(
                f"{owner}: at selection rank {rank}'s {what} differ from rank 0's (group {worst}: "
                f"{rows[rank][worst]:.6g} vs {rows[0][worst]:.6g}), so the ranks are not training the same weights; "
                + _REMEDY_MODEL
            )

