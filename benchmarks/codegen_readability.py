"""Does the generated torch code read like the source? (issue 19)

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/codegen_readability.py [--models resnet50 vit_b_16 ...]

For each torchvision model (and the project's Llama-style replica): compile, zero 30 % of the prune
groups at random (seed 0), build the subnet and generate code. Reports the share of the generated
module's state_dict keys that are keys of the source model, the generated `model.py`'s lines, the
lines of the source classes the model uses (every class in `type(m) for m in model.modules()` that
is defined in the library's own files, counted with `inspect.getsourcelines`), their ratio, the
number of generated classes, and whether `ruff check` / `ruff format --check` pass. Writes the
`codegen_readability` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from benchmarks._report import machine, write_section  # noqa: E402

MODELS = ["resnet50", "vit_b_16", "densenet121", "swin_t", "efficientnet_b0", "hf_llama", "llama_replica"]


def build(name: str) -> tuple[torch.nn.Module, tuple]:
    if name == "hf_llama":  # transformers' LlamaForCausalLM at a small config, random init
        import transformers

        config = transformers.LlamaConfig(
            vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2,
        )
        torch.manual_seed(0)
        return transformers.LlamaForCausalLM(config).eval(), (torch.randint(0, 256, (1, 16)),)
    if name == "llama_replica":
        from tests.models import REPLICAS, example_inputs

        replica = REPLICAS["llama_decoder"]
        return replica.build().eval(), example_inputs(replica)
    import torchvision

    model = getattr(torchvision.models, name)().eval()
    size = 224 if name.startswith(("vit", "swin")) else 64
    return model, (torch.randn(1, 3, size, size),)


def source_lines(model: torch.nn.Module) -> int:
    """Lines of the classes the model is built from, outside torch.nn itself."""
    classes = {type(m) for m in model.modules() if not type(m).__module__.startswith("torch.nn")}
    classes |= {base for cls in classes for base in cls.__mro__[1:] if base.__module__ == cls.__module__}
    return sum(len(inspect.getsourcelines(cls)[0]) for cls in classes)


def ruff_clean(path: Path) -> bool:
    from ruff.__main__ import find_ruff_bin

    ruff = str(find_ruff_bin())
    check = subprocess.run([ruff, "check", "--isolated", str(path)], capture_output=True, check=False)
    fmt = subprocess.run([ruff, "format", "--isolated", "--check", str(path)], capture_output=True, check=False)
    return check.returncode == 0 and fmt.returncode == 0


def measure(name: str) -> dict:
    model, example = build(name)
    graph = ai.compile(model, example)
    space = ai.search_space(graph, mode="prune")
    zero = ai.random_zero_groups(graph, space, 0.3, seed=0)
    sub = ai.subnet(graph, space, zero)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        ai.codegen(sub, "torch", folder)
        seconds = time.perf_counter() - started
        path = Path(folder) / "model.py"
        spec = importlib.util.spec_from_file_location(f"readability_{name}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        keys = set(module.load().state_dict())
        text = path.read_text()
        clean = ruff_clean(path)
    source_keys = set(model.state_dict())
    lines = text.count("\n")
    library = source_lines(model)
    return {
        "model": name,
        "keys": f"{len(keys & source_keys)}/{len(keys)}",
        "key_share": len(keys & source_keys) / len(keys),
        "lines": lines,
        "library_lines": library,
        "ratio": lines / library,
        "classes": text.count("(nn.Module):"),
        "ruff": "clean" if clean else "NOT clean",
        "codegen_s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        rows.append(measure(name))
        print(rows[-1], flush=True)
    table = Table(title="generated code vs the source (30 % of prune groups zeroed)")
    for column in ("model", "source keys", "model.py lines", "library lines", "ratio", "classes", "ruff"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["model"], r["keys"], str(r["lines"]), str(r["library_lines"]), f"{r['ratio']:.2f}", str(r["classes"]), r["ruff"])
    Console().print(table)
    lines = [
        f"`{shlex.join(['python', 'benchmarks/codegen_readability.py', *sys.argv[1:]])}` on {machine()}.",
        "",
        "Each model with 30 % of its prune-mode groups zeroed (random, seed 0), subnet, codegen-torch. *source keys*:",
        "generated state_dict keys that are keys of the source model / all generated keys. *library lines*: the",
        "source classes the model is built from (outside torch.nn), by `inspect.getsourcelines`. Goal: all keys,",
        "ratio <= 1.5.",
        "",
        "| model | source keys | model.py lines | library lines | ratio | classes | ruff check + format |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['model']} | {r['keys']} | {r['lines']} | {r['library_lines']} | {r['ratio']:.2f} | {r['classes']} | {r['ruff']} |"
        for r in rows
    ]
    write_section("codegen_readability", "\n".join(lines))


if __name__ == "__main__":
    main()
