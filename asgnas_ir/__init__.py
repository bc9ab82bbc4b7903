"""asgnas-ir: lower PyTorch/Keras models into one IR, find what can be removed, emit the sub-network.

The public API is exactly `__all__` (DESIGN §4). Importing this package imports no framework.
"""

from asgnas_ir._version import __version__
from asgnas_ir.api import (
    CheckReport,
    PassInfo,
    check,
    codegen,
    compile,
    cost,
    latency_table,
    list_passes,
    load,
    random_zero_groups,
    run_pass,
    search_space,
    subnet,
)
from asgnas_ir.errors import (
    AsgnasError,
    CheckFailed,
    CodegenError,
    FrontendError,
    IRValidationError,
    PassError,
    SpecError,
    UnsupportedOpError,
)
from asgnas_ir.ir.graph import Graph
from asgnas_ir.passes.analysis.latency import LatencyTable, LatencyTarget
from asgnas_ir.passes.analysis.search_space import SearchSpace

__all__ = [
    "AsgnasError",
    "CheckFailed",
    "CheckReport",
    "CodegenError",
    "FrontendError",
    "Graph",
    "IRValidationError",
    "LatencyTable",
    "LatencyTarget",
    "PassError",
    "PassInfo",
    "SearchSpace",
    "SpecError",
    "UnsupportedOpError",
    "__version__",
    "check",
    "codegen",
    "compile",
    "cost",
    "latency_table",
    "list_passes",
    "load",
    "random_zero_groups",
    "run_pass",
    "search_space",
    "subnet",
]
