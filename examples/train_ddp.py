"""Data-parallel H2SPG training with torch DDP, launched by torchrun (docs/distributed.md).

    torchrun --standalone --nproc_per_node 2 -m asgnas_ir.examples.train_ddp --out ddp-out

Every rank builds the same super-network (same seed), compiles the bare model for its search space,
wraps the model in DistributedDataParallel and trains on its share of each global batch. The
optimizer takes rank 0's group decisions on every rank, so all ranks end with the same zero groups;
rank 0 writes the sub-network's source and weights and reports its test accuracy.

CPU and gloo, as tested here; for GPUs see docs/distributed.md (nccl, device_ids, SyncBatchNorm).
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import asgnas_ir as ai
from asgnas_ir.backends.data import load_digits_split
from asgnas_ir.backends.torch import H2SPG
from asgnas_ir.examples.supernets import SUPERNETS
from asgnas_ir.testing import load_generated


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supernet", default="super_resnet", choices=sorted(SUPERNETS))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64, help="global batch, split evenly over the ranks")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument(
        "--shrink", type=int, default=None,
        help="steps from the choice of the groups to their being zero (default: a third of the steps after warm-up)",
    )
    parser.add_argument("--out", default="ddp-out")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # one core per rank
    dist.init_process_group("gloo")  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} does not split evenly over {world} ranks")
    shrink = max(1, (args.steps - args.warmup) // 3) if args.shrink is None else args.shrink
    if args.warmup + shrink > args.steps:
        # finalize() would have to force groups that training left non-zero, and the sub-network would lose their weights
        raise SystemExit(f"--warmup {args.warmup} + --shrink {shrink} exceed --steps {args.steps}: the groups would not reach zero")

    split = load_digits_split()
    torch.manual_seed(0)  # DDP copies rank 0's weights anyway; the seed keeps the search spaces identical
    model = SUPERNETS[args.supernet]()
    space = ai.search_space(ai.compile(model.eval(), torch.from_numpy(split.x_test[:1])), mode="erase")
    ddp = DistributedDataParallel(model.train())  # BatchNorm normalises each rank's share (no SyncBatchNorm on CPU)
    opt = H2SPG(ddp, space, lr=0.05, momentum=0.9, target_group_sparsity=0.5, warmup_steps=args.warmup, shrink_period=shrink)

    x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    local = args.batch // world
    for step in range(args.steps):
        # every rank draws the same permutation, then takes its slice of the global batch
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(step))
        batch = order[: args.batch][rank * local : (rank + 1) * local]
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(ddp(x[batch]), y[batch]).backward()
        opt.step()
    opt.finalize()  # a collective if warm-up has not ended: every rank calls it

    zero = opt.zero_groups()
    if rank == 0:
        graph = ai.compile(model.eval(), torch.from_numpy(split.x_test[:1]))
        ai.codegen(ai.subnet(graph, ai.search_space(graph, mode="erase"), zero), target="torch", out_dir=args.out)
        with torch.no_grad():
            predicted = load_generated(args.out)(torch.from_numpy(split.x_test)).argmax(1).numpy()
        accuracy = float((predicted == split.y_test).mean() * 100)
        print(f"{world} ranks: {len(zero)} of {len(space.groups)} groups removed, sub-network test accuracy "
              f"{accuracy:.1f}%; wrote {args.out}/model.py and weights.safetensors")
    dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    main()
