"""TensorFlow/Keras backend: bind IR params to Keras variables and train with H2SPG.

How Keras differs from the IR: params are found by a key unique in the model (the IR's
`Param.source`: the layer nesting plus the variable's name, e.g. `block_a/proj/kernel`; see
`asgnas_ir.frontends.keras.variables`), not by `variable.path`, which Keras lets variables share.
A slice indexes the param's IR view, a row-major reshape of its variable (kernels HWIO / (in, out)
as they are; MultiHeadAttention's (E, H, Dh) as (E, H*Dh)). Importing this package imports
tensorflow and keras; `import asgnas_ir` does not.
"""

from asgnas_ir.backends.tensorflow.binding import live_variables, rerandomize, zero_slices
from asgnas_ir.backends.tensorflow.optim import H2SPG

__all__ = ["H2SPG", "live_variables", "rerandomize", "zero_slices"]
