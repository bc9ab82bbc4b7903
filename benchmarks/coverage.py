"""Coverage of real models: `ai.check` in prune and erase mode over timm, torchvision, keras.applications
and Hugging Face models, each check in a process of its own with a time limit.

    python benchmarks/coverage.py [--sources timm,torchvision,keras,hf] [--limit N] [--models a,b,SOURCE:c]
        [--timeout 120] [--jobs 1] [--only-failed] [--refresh-models] [--results PATH] [--no-write]

Sources:
  timm         one model per architecture family (the module of timm that registers it), the one with
               the fewest parameters, built at random init with a 10-class head. The choice is cached in
               benchmarks/coverage_models.json; --refresh-models redoes it (every timm model is built on
               the 'meta' device to count its parameters, a few minutes).
  torchvision  every classification model of `torchvision.models.list_models(module=torchvision.models)`,
               10 classes, random init.
  keras        every keras.applications family (the module that defines a constructor), the constructor
               with the fewest parameters (cached beside timm's; weights=None, classes=10).
  hf           one transformers architecture per entry of HF_CASES (BERT, RoBERTa, DistilBERT, GPT-2,
               Llama, Mistral, Qwen2, Phi-3, T5's encoder; Gemma, GPT-NeoX, OPT, ELECTRA beyond the issue's
               list), each from a tiny config at random init (no download), given token ids of batch 2.

Input: batch 1 at the smallest square size of a short ladder that the model accepts (its forward runs,
for Keras: the constructor accepts the input shape); a timm model with a fixed input size gets that size.
A Hugging Face model gets int64 token ids of shape (2, 16): `check` then also runs the generated code at
(3, 16) and (2, 15), and its row says whether both batch sizes and both sequence lengths matched.

Each (model, mode) runs `python benchmarks/coverage.py --one SOURCE NAME MODE` with a time limit that
covers import, build and check. The raw rows go to benchmarks/coverage_results.json; --only-failed reruns
the models with a failed row there and merges the new rows in. Prints a table and writes the `coverage`
section of BENCHMARKS.md (unless --no-write). The hf source is kept apart: its rows go to
benchmarks/coverage_results_hf.json (beside --results) and its table to the `coverage_hf` section, so
running one group leaves the other's figures alone.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks._report import machine, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
MODELS_FILE = HERE / "coverage_models.json"
RESULTS_FILE = HERE / "coverage_results.json"
HF_SUFFIX = "_hf"  # the hf rows' results file: --results with this before its extension
SOURCES = ("timm", "torchvision", "keras", "hf")
MODES = ("prune", "erase")
NUM_CLASSES = 10
# Square input sizes tried in order; the first one the model accepts is used. Small first: the check's
# cost grows with the activations, and a model that accepts 64x64 says nothing more at 224x224.
TORCH_SIZES = (64, 128, 224, 299)
KERAS_SIZES = (64, 96, 128, 224, 299)
ERROR_CELL = 200  # characters of the first error shown in the tables (the JSON keeps the whole line)


@dataclass(frozen=True)
class HFCase:
    """A Hugging Face model built from a config, no download: `transformers.<config>(**config_kwargs)`
    then `transformers.<model>(config)`. `inputs` is `tokens` (int64 ids below the vocabulary size, shape
    (batch, seq_len)) or `image` (float (batch, num_channels, image_size, image_size)). `pad_tail`: the
    last row's final tokens become the config's `pad_token_id` (right padding)."""

    name: str
    config: str
    model: str
    config_kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: str = "tokens"
    batch: int = 2
    seq_len: int = 16
    image_size: int = 32
    pad_tail: int = 0


# One tiny config per architecture: big enough to have every structure of the real thing (two layers,
# four heads, an MLP wider than the residual), small enough that a check takes seconds.
_TINY = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64, "max_position_embeddings": 64}
# the decoders share key/value heads between pairs of query heads (grouped-query attention)
_GQA = {**_TINY, "num_key_value_heads": 2}

HF_CASES: list[HFCase] = [
    HFCase("bert", "BertConfig", "BertModel", _TINY),
    # RoBERTa counts its position ids past its padding tokens (id 1): a padded row exercises that
    HFCase("roberta", "RobertaConfig", "RobertaModel", _TINY, pad_tail=3),
    HFCase("distilbert", "DistilBertConfig", "DistilBertModel",
           {"vocab_size": 100, "dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64, "max_position_embeddings": 64}),
    HFCase("gpt2", "GPT2Config", "GPT2LMHeadModel",
           {"vocab_size": 100, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "bos_token_id": 0,
            "eos_token_id": 0}),
    HFCase("llama", "LlamaConfig", "LlamaForCausalLM", _GQA),
    HFCase("mistral", "MistralConfig", "MistralForCausalLM", _GQA),
    HFCase("qwen2", "Qwen2Config", "Qwen2ForCausalLM", _GQA),
    # Phi-3's defaults name token ids (32000 and up) beyond a 100-token vocabulary
    HFCase("phi3", "Phi3Config", "Phi3ForCausalLM", {**_GQA, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}),
    HFCase("t5_encoder", "T5Config", "T5EncoderModel",
           {"vocab_size": 100, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4}),
    # beyond the list: architectures no test here was written for
    HFCase("gemma", "GemmaConfig", "GemmaForCausalLM", {**_GQA, "head_dim": 8}),
    HFCase("gpt_neox", "GPTNeoXConfig", "GPTNeoXForCausalLM", _TINY),
    HFCase("opt", "OPTConfig", "OPTForCausalLM",
           {"vocab_size": 100, "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "max_position_embeddings": 64, "word_embed_proj_dim": 32}),
    HFCase("electra", "ElectraConfig", "ElectraModel", {**_TINY, "embedding_size": 32}),
]


@dataclass(frozen=True)
class Case:
    source: str
    name: str
    family: str = ""


# -- model lists ------------------------------------------------------------------------------------------


def _load_models_file() -> dict[str, Any]:
    return json.loads(MODELS_FILE.read_text()) if MODELS_FILE.exists() else {}


def _save_models_file(data: dict[str, Any]) -> None:
    MODELS_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def refresh_timm(console: Console) -> list[dict[str, Any]]:
    """The smallest model of each timm family: every registered model is built on the 'meta' device
    (shapes only, no memory, no init cost) to count its parameters; then, smallest first, candidates are
    built for real until one builds at random init."""
    import warnings

    import timm
    import torch
    from timm.models import model_entrypoint

    warnings.simplefilter("ignore")
    families: dict[str, list[tuple[int | None, str, dict[str, Any]]]] = {}
    names = timm.list_models()
    start = time.perf_counter()
    for i, name in enumerate(names):
        family = model_entrypoint(name).__module__.rsplit(".", 1)[-1]
        try:
            with torch.device("meta"):
                model = timm.create_model(name, pretrained=False)
            params: int | None = sum(p.numel() for p in model.parameters())
            cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
        except Exception:  # noqa: BLE001  (measured for real below, after the measurable ones)
            params, cfg = None, {}
        families.setdefault(family, []).append((params, name, cfg))
        if (i + 1) % 200 == 0:
            console.print(f"timm: {i + 1}/{len(names)} models counted ({time.perf_counter() - start:.0f} s)")
    chosen = []
    for family, candidates in sorted(families.items()):
        candidates.sort(key=lambda c: (c[0] is None, c[0] or 0, c[1]))
        problems = []
        for params, name, cfg in candidates:
            try:
                model = timm.create_model(name, pretrained=False)
            except Exception as exc:  # noqa: BLE001  (the next smallest is tried)
                problems.append(f"{name}: {first_line(exc)}")
                continue
            cfg = cfg or dict(getattr(model, "pretrained_cfg", {}) or {})
            chosen.append({
                "family": family, "model": name, "params": params or sum(p.numel() for p in model.parameters()),
                "input_size": list(cfg.get("input_size", (3, 224, 224))),
                "fixed_input_size": bool(cfg.get("fixed_input_size", False)), "candidates": len(candidates),
            })
            del model
            break
        else:
            console.print(f"[red]timm family {family}: no model builds at random init: {'; '.join(problems)}")
    return chosen


def _keras_constructors() -> dict[str, list[str]]:
    """keras.applications constructors by family (the module that defines them)."""
    import keras

    families: dict[str, list[str]] = {}
    for name in dir(keras.applications):
        fn = getattr(keras.applications, name)
        if name[:1].isupper() and callable(fn):
            families.setdefault(fn.__module__.rsplit(".", 1)[-1], []).append(name)
    return families


def refresh_keras(console: Console) -> list[dict[str, Any]]:
    """The smallest constructor of each keras.applications family (Keras has no shape-only device: each
    one is built once, at the smallest size it accepts)."""
    import keras

    chosen = []
    for family, names in sorted(_keras_constructors().items()):
        sized = []
        for name in sorted(names):
            try:
                model, size = _build_keras(name)
            except Exception as exc:  # noqa: BLE001
                console.print(f"[red]keras {name}: does not build: {first_line(exc)}")
                continue
            sized.append((model.count_params(), name, size))
            del model
            keras.backend.clear_session()
        if sized:
            params, name, _ = min(sized)
            chosen.append({"family": family, "model": name, "params": int(params), "candidates": len(names)})
        else:
            console.print(f"[red]keras family {family}: no constructor builds")
    return chosen


def list_cases(source: str, refresh: bool, console: Console) -> list[Case]:
    """The models of `source` in a stable order (the cached choice for timm and keras)."""
    if source == "torchvision":
        import torchvision

        return [Case(source, n, n) for n in sorted(torchvision.models.list_models(module=torchvision.models))]
    if source == "hf":
        return [Case(source, c.name, c.model) for c in HF_CASES]
    if source not in ("timm", "keras"):
        raise SystemExit(f"unknown source '{source}'; use some of {', '.join(SOURCES)}")
    data = _load_models_file()
    if refresh or source not in data:
        if _version(source) is None:
            console.print(f"[yellow]{source} is not installed: no {source} models")
            return []
        console.print(f"choosing the {source} models (cached in {MODELS_FILE.name}) ...")
        entries = refresh_timm(console) if source == "timm" else refresh_keras(console)
        data = _load_models_file()  # another source may have been refreshed meanwhile
        data[source] = {"version": _version(source), "models": entries}
        _save_models_file(data)
    entry = data[source]
    installed = _version(source)
    if installed and entry.get("version") != installed:
        console.print(f"[yellow]{MODELS_FILE.name} lists {source} {entry.get('version')} models, {installed} is "
                      "installed; --refresh-models to choose again")
    return [Case(source, e["model"], e["family"]) for e in entry["models"]]


def _timm_entry(name: str) -> dict[str, Any] | None:
    for entry in _load_models_file().get("timm", {}).get("models", []):
        if entry["model"] == name:
            return entry
    return None


# -- building one model -----------------------------------------------------------------------------------


def _first_accepted(sizes: Iterable[Any], attempt: Callable[[Any], Any], what: str) -> Any:
    """`attempt(size)` for the first size it does not raise on; else an error naming every size tried."""
    errors = []
    for size in sizes:
        try:
            return attempt(size)
        except Exception as exc:  # noqa: BLE001  (a size the model refuses: the next one is tried)
            errors.append(f"{size}: {first_line(exc)}")
    raise RuntimeError(f"{what} accepts none of the input sizes tried ({'; '.join(errors)})")


def _torch_input(model: Any, sizes: Sequence[Any], what: str) -> tuple[Any, ...]:
    """A batch-1 image of the first size in `sizes` (int: square; (H, W)) whose forward runs."""
    import torch

    generator = torch.Generator().manual_seed(0)

    def attempt(size: Any) -> tuple[Any, ...]:
        h, w = (size, size) if isinstance(size, int) else size
        x = torch.randn(1, 3, h, w, generator=generator)
        with torch.no_grad():
            model(x)
        return (x,)

    return _first_accepted(sizes, attempt, what)


def _build_timm(name: str) -> tuple[Any, tuple[Any, ...]]:
    import timm
    import torch

    torch.manual_seed(0)
    try:
        model = timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES)
    except TypeError:  # a feature encoder without a classifier head
        model = timm.create_model(name, pretrained=False)
    model.eval()
    entry = _timm_entry(name)
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    _, h, w = entry["input_size"] if entry else cfg.get("input_size", (3, 224, 224))
    fixed = entry["fixed_input_size"] if entry else cfg.get("fixed_input_size", False)
    sizes: list[Any] = [] if fixed else [s for s in TORCH_SIZES if s < min(h, w)]
    return model, _torch_input(model, [*sizes, (h, w)], f"timm {name}")


def _build_torchvision(name: str) -> tuple[Any, tuple[Any, ...]]:
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES).eval()
    return model, _torch_input(model, TORCH_SIZES, f"torchvision {name}")


def _build_keras(name: str, **kwargs: Any) -> tuple[Any, int]:
    """keras.applications `name` at the smallest size of KERAS_SIZES its constructor accepts."""
    import keras

    keras.utils.set_random_seed(0)
    build = getattr(keras.applications, name)
    return _first_accepted(
        KERAS_SIZES,
        lambda s: (build(weights=None, classes=NUM_CLASSES, input_shape=(s, s, 3), **kwargs), s),
        f"keras.applications.{name}",
    )


def _build_hf(name: str) -> tuple[Any, tuple[Any, ...]]:
    import torch
    import transformers

    case = next((c for c in HF_CASES if c.name == name), None)
    if case is None:
        raise KeyError(f"no Hugging Face case named '{name}' in HF_CASES")
    torch.manual_seed(0)
    config = getattr(transformers, case.config)(**case.config_kwargs)
    model = getattr(transformers, case.model)(config).eval()
    generator = torch.Generator().manual_seed(0)
    if case.inputs == "tokens":
        vocab = int(getattr(config, "vocab_size", 2))
        ids = torch.randint(0, vocab, (case.batch, case.seq_len), generator=generator)
        if case.pad_tail:
            pad = getattr(config, "pad_token_id", None)
            if pad is None:
                raise ValueError(f"HFCase {name}: pad_tail={case.pad_tail} but {case.config} has no pad_token_id")
            ids[-1, -case.pad_tail:] = int(pad)
        return model, (ids,)
    if case.inputs == "image":
        channels = int(getattr(config, "num_channels", 3))
        return model, (torch.randn(case.batch, channels, case.image_size, case.image_size, generator=generator),)
    raise ValueError(f"HFCase {name}: inputs must be 'tokens' or 'image', not '{case.inputs}'")


def build(source: str, name: str) -> tuple[Any, tuple[Any, ...]]:
    """The model `name` of `source` at random init and an example input it accepts (batch 1; a
    Hugging Face case's own batch)."""
    if source == "timm":
        return _build_timm(name)
    if source == "torchvision":
        return _build_torchvision(name)
    if source == "keras":
        import numpy as np

        model, size = _build_keras(name)
        return model, (np.random.default_rng(0).standard_normal((1, size, size, 3)).astype("float32"),)
    if source == "hf":
        return _build_hf(name)
    raise ValueError(f"unknown source '{source}'; use one of {', '.join(SOURCES)}")


# -- one check --------------------------------------------------------------------------------------------


def first_line(exc: BaseException) -> str:
    """The exception's type and the first non-empty line of its message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _shapes(inputs: Sequence[Any]) -> list[list[int]]:
    return [[int(d) for d in getattr(x, "shape", ())] for x in inputs]


def _row(source: str, name: str, mode: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": source, "model": name, "mode": mode, "frontend": None, "groups": None, "ok": False,
        "shapes_checked": [], "both_batches": False, "seconds": None, "error": None, "input": None, "notes": [],
    }
    row.update(values)
    return row


def check_row(source: str, name: str, model: Any, inputs: Sequence[Any], mode: str) -> dict[str, Any]:
    """`ai.check(model, inputs, mode=mode)` as one result row; an exception becomes the row's error."""
    import asgnas_ir as ai

    start = time.perf_counter()
    try:
        report = ai.check(model, tuple(inputs), mode=mode)
    except Exception as exc:  # noqa: BLE001  (a failure is a result here)
        return _row(source, name, mode, seconds=round(time.perf_counter() - start, 2), error=first_line(exc),
                    input=_shapes(inputs))
    seconds = round(time.perf_counter() - start, 2)
    # a report without `shapes_checked` (before the two-batch check) ran at the example's shapes only
    shapes = [list(s) for s in (getattr(report, "shapes_checked", None) or [_shapes(inputs)])]
    reason = getattr(report, "reason", None)
    error = None if report.ok else (reason.splitlines()[0] if reason else
                                    f"not ok: max_abs_diff {report.max_abs_diff:.3g} > tolerance {report.tolerance:.3g}")
    return _row(source, name, mode, frontend=report.frontend, groups=report.groups, ok=bool(report.ok),
                shapes_checked=shapes, both_batches=bool(report.ok) and len(shapes) >= 2, seconds=seconds,
                error=error, input=_shapes(inputs), notes=list(getattr(report, "notes", []) or []),
                params=report.params_full)


def sizes_checked(row: dict[str, Any]) -> dict[str, Any]:
    """The batch sizes and sequence lengths a row's check ran the generated code at (read off the
    first input of each run in `shapes_checked`: its axis 0, and its axis 1 for token ids), and whether
    the row is ok at two of each. An image input has no sequence axis: two batch sizes suffice."""
    firsts = [shapes[0] for shapes in row.get("shapes_checked") or [] if shapes and shapes[0]]
    batches = sorted({s[0] for s in firsts})
    tokens = bool(firsts) and len(firsts[0]) == 2
    seq_lens = sorted({s[1] for s in firsts}) if tokens else []
    ok = bool(row.get("ok")) and len(batches) >= 2 and (len(seq_lens) >= 2 or not tokens)
    return {"batches": batches, "seq_lens": seq_lens, "sizes_ok": ok}


def run_case(source: str, name: str, mode: str) -> dict[str, Any]:
    """Build `name` of `source` and check it in `mode`, in this process: one result row (for the hf
    source with the sizes it was checked at, see `sizes_checked`)."""
    start = time.perf_counter()
    try:
        model, inputs = build(source, name)
    except Exception as exc:  # noqa: BLE001
        row = _row(source, name, mode, seconds=round(time.perf_counter() - start, 2),
                   error=f"build: {first_line(exc)}")
    else:
        built = round(time.perf_counter() - start, 2)
        row = {**check_row(source, name, model, inputs, mode), "build_seconds": built}
    return {**row, **sizes_checked(row)} if source == "hf" else row


def _child_env(jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    # the jobs share the cores: without this each one's BLAS/OpenMP pool would claim all of them
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def run_isolated(case: Case, mode: str, timeout: float, env: dict[str, str]) -> dict[str, Any]:
    """`run_case` in a child process (a crash or a hang costs only this row), killed with its whole
    process group after `timeout` seconds."""
    with tempfile.TemporaryDirectory(prefix="asgnas-coverage-") as tmp:
        out, err = Path(tmp) / "row.json", Path(tmp) / "stderr.txt"
        command = [sys.executable, str(Path(__file__).resolve()), "--one", case.source, case.name, mode, "--out", str(out)]
        start = time.perf_counter()
        with err.open("w") as stderr:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return _row(case.source, case.name, mode, seconds=round(timeout, 1), family=case.family,
                            error=f"timed out after {timeout:g} s (import, build and check)")
        if out.exists():
            return {**json.loads(out.read_text()), "family": case.family}
        lines = [line for line in err.read_text(errors="replace").splitlines() if line.strip()]
        why = "killed (SIGKILL; out of memory?)" if code == -signal.SIGKILL else f"exited with code {code}"
        return _row(case.source, case.name, mode, seconds=round(time.perf_counter() - start, 1), family=case.family,
                    error=f"worker {why}" + (f": {lines[-1].strip()}" if lines else ""))


# -- report -----------------------------------------------------------------------------------------------


def _cell(text: str | None, width: int = ERROR_CELL) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _model_cell(source: str, name: str, family: str) -> str:
    return name if not family or family == name or source not in ("timm", "keras") else f"{name} ({family})"


def _yes(flag: bool | None) -> str:
    return "–" if flag is None else ("yes" if flag else "no")


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per model (rows in first-seen order), its modes side by side."""
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        entry = models.setdefault((row["source"], row["model"]), {
            "source": row["source"], "model": row["model"], "family": row.get("family", ""), "modes": {}})
        entry["modes"][row["mode"]] = row
    for entry in models.values():
        modes = [entry["modes"].get(m) for m in MODES]
        present = [r for r in modes if r]
        entry["ok"] = {m: (entry["modes"][m]["ok"] if m in entry["modes"] else None) for m in MODES}
        entry["all_ok"] = len(present) == len(MODES) and all(r["ok"] for r in present)
        entry["both_batches"] = entry["all_ok"] and all(r.get("both_batches") for r in present)
        frontends = list(dict.fromkeys(r["frontend"] for r in present if r.get("frontend")))
        entry["frontend"] = "/".join(frontends) or "–"
        entry["groups"] = "/".join("–" if r is None or r.get("groups") is None else str(r["groups"]) for r in modes)
        entry["seconds"] = sum(r.get("seconds") or 0 for r in present)
        errors = [(r["mode"], r["error"]) for r in present if r.get("error")]
        if errors and all(e == errors[0][1] for _, e in errors):
            entry["error"] = f"{', '.join(m for m, _ in errors)}: {errors[0][1]}"
        elif errors:
            entry["error"] = f"{errors[0][0]}: {errors[0][1]}"
        elif entry["all_ok"] and not entry["both_batches"]:
            # the report's note on why no second size ran (a source with a fixed batch), when it gave one
            notes = [n for r in present for n in r.get("notes", [])
                     if any(word in n for word in ("batch", "shape", "size", "static"))]
            entry["error"] = "checked at one input shape only" + (f": {notes[0]}" if notes else "")
        else:
            entry["error"] = ""
    return list(models.values())


def totals(models: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    def share(n: int, total: int) -> str:
        return f"{n} / {total} ({100 * n / total:.0f}%)" if total else "0 / 0"

    out = []
    for source in SOURCES:
        mine = [m for m in models if m["source"] == source]
        if not mine:
            continue
        count = len(mine)
        out.append((
            source, str(count), share(sum(bool(m["ok"]["prune"]) for m in mine), count),
            share(sum(bool(m["ok"]["erase"]) for m in mine), count), share(sum(m["all_ok"] for m in mine), count),
            share(sum(m["both_batches"] for m in mine), count),
        ))
    return out


MODEL_HEADERS = ("source", "model", "frontend", "groups (prune/erase)", "prune ok", "erase ok", "both batches",
                 "seconds", "first error")
TOTAL_HEADERS = ("source", "models", "prune ok", "erase ok", "both modes ok", "both modes ok at 2 batches")


def model_cells(m: dict[str, Any], width: int = ERROR_CELL) -> tuple[str, ...]:
    return (m["source"], _model_cell(m["source"], m["model"], m["family"]), m["frontend"], m["groups"],
            _yes(m["ok"]["prune"]), _yes(m["ok"]["erase"]), _yes(m["both_batches"]), f"{m['seconds']:.1f}",
            _cell(m["error"], width))


def versions() -> str:
    """The installed versions of the frameworks the sources use (without importing them)."""
    found = []
    for label, packages in (("torch", ["torch"]), ("torchvision", ["torchvision"]), ("timm", ["timm"]),
                            ("keras", ["keras"]), ("tensorflow", ["tensorflow", "tensorflow-cpu"]),
                            ("transformers", ["transformers"])):
        version = next((v for p in packages if (v := _version(p))), None)
        if version:
            found.append(f"{label} {version}")
    return ", ".join(found)


def print_tables(models: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="check coverage of real models (prune and erase, random init)")
    for column in MODEL_HEADERS:
        table.add_column(column, justify="right" if column in ("groups (prune/erase)", "seconds") else "left",
                         overflow="fold")
    for m in models:
        table.add_row(*model_cells(m, 120))
    console.print(table)
    summary = Table(title="totals per source")
    for column in TOTAL_HEADERS:
        summary.add_column(column, justify="left" if column == "source" else "right")
    for row in totals(models):
        summary.add_row(*row)
    console.print(summary)


def _md(cells: Iterable[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def markdown(models: list[dict[str, Any]], command: str, note: str, timeout: float) -> str:
    lines = [
        "## Coverage: `check` on real models (timm, torchvision, keras.applications)",
        "",
        f"Command: `{command}`. Machine: {machine()}; {versions()}. Random init, 10 classes, batch 1 at the "
        f"smallest input the model accepts; each (model, mode) in its own process with a {timeout:g} s limit "
        "(import, build and check). *both batches*: both modes ok with the generated code run at two batch sizes. "
        "*seconds*: the two checks, build excluded." + (f" {note}" if note else ""),
        "",
        _md(MODEL_HEADERS),
        "|" + "---|" * 3 + "---:|" + "---|" * 3 + "---:|---|",
    ]
    lines += [_md(model_cells(m)) for m in models]
    lines += ["", _md(TOTAL_HEADERS), "|---|" + "---:|" * (len(TOTAL_HEADERS) - 1)]
    lines += [_md(row) for row in totals(models)]
    return "\n".join(lines)



# -- the Hugging Face section -----------------------------------------------------------------------------

HF_HEADERS = ("model", "class", "frontend", "groups (prune/erase)", "prune ok", "erase ok",
              "sizes ok (batch; seq len)", "seconds", "first error")


def _sizes_cell(m: dict[str, Any]) -> str:
    """'yes (batch 2, 3; seq 15, 16)' when both modes matched at two batch sizes and two sequence
    lengths; else 'no', with the sizes the ok modes did run at."""
    present = [r for r in m["modes"].values() if r]
    if not present:
        return "–"
    ran = [r for r in present if r.get("ok")]
    batches = sorted({b for r in ran for b in r.get("batches") or []})
    seq_lens = sorted({s for r in ran for s in r.get("seq_lens") or []})
    sizes = f"batch {', '.join(map(str, batches))}" + (f"; seq {', '.join(map(str, seq_lens))}" if seq_lens else "")
    if hf_sizes_ok(m):
        return f"yes ({sizes})"
    return f"no ({sizes})" if batches else "no"


def hf_sizes_ok(m: dict[str, Any]) -> bool:
    """Both modes ran and each matched at two batch sizes and (token inputs) two sequence lengths."""
    return m["all_ok"] and all(m["modes"][mode].get("sizes_ok") for mode in MODES)


def hf_cells(m: dict[str, Any], width: int = ERROR_CELL) -> tuple[str, ...]:
    error = m["error"]
    if m["all_ok"] and not hf_sizes_ok(m):
        # summarize() words this for a fixed batch; a token model also needs a second sequence length
        short = "checked at fewer than two batch sizes and two sequence lengths"
        error = error.replace("checked at one input shape only", short) if error else short
    return (m["model"], m["family"], m["frontend"], m["groups"], _yes(m["ok"]["prune"]), _yes(m["ok"]["erase"]),
            _sizes_cell(m), f"{m['seconds']:.1f}", _cell(error, width))


def hf_totals(models: list[dict[str, Any]]) -> tuple[str, ...]:
    count = len(models)
    return (str(count), f"{sum(bool(m['ok']['prune']) for m in models)} / {count}",
            f"{sum(bool(m['ok']['erase']) for m in models)} / {count}", f"{sum(hf_sizes_ok(m) for m in models)} / {count}")


HF_TOTAL_HEADERS = ("architectures", "prune ok", "erase ok", "both modes ok at 2 batch sizes and 2 seq lens")


def print_hf_table(models: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="check coverage of Hugging Face architectures (tiny configs, random init)")
    for column in HF_HEADERS:
        table.add_column(column, justify="right" if column in ("groups (prune/erase)", "seconds") else "left",
                         overflow="fold")
    for m in models:
        table.add_row(*hf_cells(m, 120))
    console.print(table)
    console.print("totals: " + ", ".join(f"{h} {v}" for h, v in zip(HF_TOTAL_HEADERS, hf_totals(models), strict=True)))


def _hf_config_note() -> str:
    sizes = ", ".join(f"{k} {v}" for k, v in _TINY.items())
    return (f"Configs (`HF_CASES` in benchmarks/coverage.py): {sizes}; the decoders with {_GQA['num_key_value_heads']} "
            "key/value heads (grouped-query attention; Gemma with head_dim 8); DistilBERT, T5 and OPT the same sizes "
            "under their own names; ELECTRA with embedding_size 32; GPT-2 the same but for its MLP, 4 x 32 = 128 wide "
            "(its default).")


def hf_markdown(models: list[dict[str, Any]], command: str, note: str, timeout: float) -> str:
    b, s = HFCase.batch, HFCase.seq_len  # the cases' defaults (none overrides them)
    lines = [
        "## Coverage: `check` on Hugging Face architectures (transformers, tiny configs)",
        "",
        f"Command: `{command}`. Machine: {machine()}; {versions()}. Each architecture from a tiny config at random "
        f"init (no download), `frontend=\"auto\"`, token ids of shape ({b}, {s}) (RoBERTa's last row ends in 3 "
        f"padding tokens); each (model, mode) in its own process with a {timeout:g} s limit (import, build and "
        "check). *sizes ok*: in both modes the generated code matched the model at the example's shape and at one "
        f"more batch row and one token fewer, ({b + 1}, {s}) and ({b}, {s - 1}); the sizes listed are those the ok "
        "modes ran at. *seconds*: the two checks, build excluded. " + _hf_config_note() + (f" {note}" if note else ""),
        "",
        _md(HF_HEADERS),
        "|" + "---|" * 3 + "---:|" + "---|" * 3 + "---:|---|",
    ]
    lines += [_md(hf_cells(m)) for m in models]
    lines += ["", _md(HF_TOTAL_HEADERS), "|" + "---:|" * len(HF_TOTAL_HEADERS), _md(hf_totals(models))]
    return "\n".join(lines)

# -- driver -----------------------------------------------------------------------------------------------


def _select(cases: list[Case], models: list[str], limit: int | None, source: str) -> list[Case]:
    if models:
        forced = [m.split(":", 1)[1] for m in models if m.startswith(f"{source}:")]
        wanted = {m for m in models if ":" not in m} | set(forced)
        known = {c.name for c in cases}
        cases = [c for c in cases if c.name in wanted] + [Case(source, n, n) for n in forced if n not in known]
    return cases[:limit] if limit is not None else cases


def _previous(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SystemExit(f"--only-failed needs the results of an earlier run in {path}; run without it first")
    return json.loads(path.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, of: " + ", ".join(SOURCES))
    parser.add_argument("--limit", type=int, default=None, help="the first N models of each source")
    parser.add_argument("--models", default="", help="comma-separated names; SOURCE:NAME adds a model not listed")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per (model, mode) process")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes at once")
    parser.add_argument("--only-failed", action="store_true", help="rerun the failed models of --results, merging")
    parser.add_argument("--refresh-models", action="store_true", help="choose the timm/keras models again")
    parser.add_argument("--results", type=Path, default=RESULTS_FILE, help="raw rows as JSON")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--one", nargs=3, metavar=("SOURCE", "NAME", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:  # the child process of run_isolated
        source, name, mode = args.one
        try:
            row = run_case(source, name, mode)
        except BaseException as exc:  # noqa: BLE001  (whatever escapes still becomes a row)
            traceback.print_exc()
            row = _row(source, name, mode, error=first_line(exc))
        if args.out:
            args.out.write_text(json.dumps(row))
        else:
            print(json.dumps(row))
        return 0

    # piped to a file, rich would fold the table to 80 columns
    console = Console(width=None if sys.stdout.isatty() else 220)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    for source in sources:
        if source not in SOURCES:
            parser.error(f"unknown source '{source}'; use some of {', '.join(SOURCES)}")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    command = "python benchmarks/coverage.py" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
    # the vision sources share one table; Hugging Face has its own (other columns, its own results file),
    # so rerunning either leaves the other's figures as they were
    groups = [("coverage", [s for s in sources if s != "hf"], args.results),
              ("coverage_hf", [s for s in sources if s == "hf"], hf_results_path(args.results))]
    ran = False
    for section, group, results in groups:
        if group:
            ran |= _run_group(section, group, results, models, command, args, console)
    if not ran:
        console.print("nothing to run")
    return 0


def hf_results_path(results: Path) -> Path:
    """Where the hf rows go: beside `results`, with HF_SUFFIX before the extension."""
    return results.with_name(f"{results.stem}{HF_SUFFIX}{results.suffix}")


def _run_group(section: str, sources: list[str], results: Path, models: list[str], command: str,
               args: argparse.Namespace, console: Console) -> bool:
    """Check the models of `sources` in both modes, write `results` and the BENCHMARKS.md `section`;
    False when there was nothing to run."""
    previous = _previous(results) if args.only_failed else None
    cases: list[Case] = []
    for source in sources:
        if previous is not None:
            failed = {(m["source"], m["model"]): m for m in summarize(previous["rows"]) if not m["all_ok"]}
            listed = [Case(s, n, m["family"]) for (s, n), m in failed.items() if s == source]
        else:
            listed = list_cases(source, args.refresh_models, console)
        cases += _select(listed, models, args.limit, source)
    if not cases:
        return False

    env = _child_env(args.jobs)
    jobs = [(case, mode) for case in cases for mode in MODES]
    done: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = time.perf_counter()

    def work(job: tuple[Case, str]) -> dict[str, Any]:
        row = run_isolated(job[0], job[1], args.timeout, env)
        with lock:
            done.append(row)
            status = "[green]ok" if row["ok"] else "[red]failed"
            console.print(f"[{len(done)}/{len(jobs)}] {row['source']} {row['model']} {row['mode']} {status}[/] "
                          f"{row.get('seconds') or 0:.1f} s" + (f"  {_cell(row['error'], 120)}" if row.get("error") else ""))
        return row

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(work, jobs))
    console.print(f"{len(jobs)} checks in {time.perf_counter() - start:.0f} s")

    note = ""
    if previous is not None:
        fresh = {(r["source"], r["model"], r["mode"]): r for r in rows}
        rows = [fresh.get((r["source"], r["model"], r["mode"]), r) for r in previous["rows"]]
        note = f"Rows that passed before come from the previous run (`{previous.get('command', '?')}`)."
        command, note = previous.get("command", command), f"Failures rerun with `{command}`. {note}"
    results.write_text(json.dumps({"command": command, "note": note, "timeout": args.timeout,
                                   "machine": machine(), "versions": versions(), "rows": rows}, indent=1) + "\n")
    summary = summarize(rows)
    if section == "coverage_hf":
        print_hf_table(summary, console)
        body = hf_markdown(summary, command, note, args.timeout)
    else:
        print_tables(summary, console)
        body = markdown(summary, command, note, args.timeout)
    if not args.no_write:
        write_section(section, body)
    return True

if __name__ == "__main__":
    sys.exit(main())
