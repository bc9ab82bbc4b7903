"""The public surface: `import asgnas_ir as ai`, its names, the pass registry and the package list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import asgnas_ir as ai

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, vendored by pip
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "tensorflow", "keras", "onnx")


def imported_frameworks(code: str) -> list[str]:
    """Run `code` in a fresh interpreter and return which framework modules it imported."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    return [m for m in out.split(",") if m]


def test_import_does_not_import_any_framework():
    """`import asgnas_ir` in a fresh interpreter imports none of torch, tensorflow, keras or onnx."""
    assert imported_frameworks("import asgnas_ir") == []


def test_listing_passes_and_loading_a_graph_do_not_import_frameworks(tmp_path: Path):
    """Listing passes, loading an IR file and running analyses on it need no framework."""
    from asgnas_ir.ir import Graph, Value, make_node
    from asgnas_ir.ir.ops import Op

    graph = Graph(
        name="g", inputs=["x"], outputs=["y"],
        values={"x": Value(shape=(1, 4), channel_axis=1), "y": Value(shape=(1, 4), channel_axis=1)},
        nodes=[make_node(Op.RELU, "y", ["x"], ["y"])],
    )
    path = graph.save(tmp_path / "g.json")
    code = (
        "import asgnas_ir as ai\n"
        "ai.list_passes()\n"
        f"g = ai.load({str(path)!r})\n"
        "ai.run_pass('verify', g); ai.cost(g); ai.search_space(g)\n"
    )
    assert imported_frameworks(code) == []


def test_every_name_in_all_exists():
    """Every name listed in asgnas_ir.__all__ is an attribute of the package, listed once."""
    assert len(ai.__all__) == len(set(ai.__all__))
    missing = [name for name in ai.__all__ if not hasattr(ai, name)]
    assert missing == []
    assert isinstance(ai.__version__, str) and ai.__version__


def test_errors_share_one_base_class():
    """Every public error class derives from AsgnasError, so one except clause catches them all."""
    for name in ("CheckFailed", "CodegenError", "FrontendError", "IRValidationError", "PassError", "SpecError", "UnsupportedOpError"):
        assert issubclass(getattr(ai, name), ai.AsgnasError), name


def _declared_package_dirs() -> dict[str, Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = config.get("package-dir", {})
    dirs = {}
    for package in config["packages"]:
        prefix = max((p for p in mapping if package == p or package.startswith(p + ".")), key=len, default=None)
        if prefix is None:
            rel = package.replace(".", "/")
        else:
            rel = "/".join([mapping[prefix], *package[len(prefix) + 1 :].split(".")]) if package != prefix else mapping[prefix]
        dirs[package] = ROOT / rel
    return dirs


def test_setuptools_package_list_matches_the_folders():
    """[tool.setuptools] packages (through package-dir) names exactly the folders with an __init__.py."""
    declared = _declared_package_dirs()
    for package, folder in declared.items():
        assert (folder / "__init__.py").is_file(), f"{package} -> {folder} has no __init__.py"
    on_disk = set()
    for top in ("asgnas_ir", "frontends", "passes", "backends", "examples"):
        for init in (ROOT / top).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                on_disk.add(init.parent.resolve())
    assert {folder.resolve() for folder in declared.values()} == on_disk


EXPECTED_PASSES = ("verify", "shape-inference", "dependency-graph", "cost", "subnet", "codegen-torch", "search-space")


def test_list_passes_has_the_core_passes_with_descriptions():
    """ai.list_passes() includes the core passes; each compares equal to its name and has a description."""
    passes = ai.list_passes()
    names = [str(p) for p in passes]
    for name in EXPECTED_PASSES:
        assert name in passes
    assert names == sorted(names)
    for info in passes:
        assert isinstance(info, ai.PassInfo)
        assert info == info.name
        assert isinstance(info.description, str) and info.description.strip()
        assert info.kind in ("analysis", "transform", "codegen")
    kinds = {p.name: p.kind for p in passes}
    assert kinds["subnet"] == "transform" and kinds["codegen-torch"] == "codegen" and kinds["verify"] == "analysis"


def test_run_pass_with_an_unknown_name_lists_the_known_ones():
    """ai.run_pass with a misspelt pass name raises PassError listing the registered passes."""
    from asgnas_ir.ir import Graph

    graph = Graph(name="g", inputs=[], outputs=[], values={}, nodes=[])
    with pytest.raises(ai.PassError, match="no pass named 'verfy'; known passes: .*verify"):
        ai.run_pass("verfy", graph)


def test_unknown_codegen_target_is_a_spec_error(tmp_path: Path):
    """ai.codegen with an unknown target raises SpecError naming the valid targets."""
    from asgnas_ir.ir import Graph

    graph = Graph(name="g", inputs=[], outputs=[], values={}, nodes=[])
    with pytest.raises(ai.SpecError, match="codegen target must be one of torch"):
        ai.codegen(graph, target="tflite", out_dir=tmp_path)
