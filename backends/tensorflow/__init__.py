"""TensorFlow/Keras backend: bind IR params to Keras variables and train with H2SPG.

How Keras differs from the IR: params are found by `variable.path` (the IR's `Param.source`, e.g.
`sequential/dense/kernel`); Keras variables have the stored weights' shapes (kernels HWIO / (in, out)),
so the IR axes of a slice index them directly. Importing this package imports tensorflow and keras;
`import asgnas_ir` does not.
"""

from asgnas_ir.backends.tensorflow.binding import live_variables, rerandomize, zero_slices
from asgnas_ir.backends.tensorflow.optim import H2SPG

__all__ = ["H2SPG", "live_variables", "rerandomize", "zero_slices"]
