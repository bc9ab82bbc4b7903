"""Searchers over the automatically generated search space (DESIGN §5, §5a).

Framework-free: architectures (`ArchitectureSpace`), evaluation records, the resumable JSONL log and
the process/Ray pool, Pareto fronts. The framework-specific parts (GOLD's gates, evaluators that
train a candidate) live in the backends.
"""

from asgnas_ir.backends.search.architecture import ArchitectureCost, ArchitectureSpace
from asgnas_ir.backends.search.evaluation import Evaluation, EvaluationLog, EvaluationPool
from asgnas_ir.backends.search.pareto import pareto_front

__all__ = ["ArchitectureCost", "ArchitectureSpace", "Evaluation", "EvaluationLog", "EvaluationPool", "pareto_front"]
