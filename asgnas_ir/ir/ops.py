"""The closed set of canonical op kinds and the category sets passes reason with.

Adding an op touches four places (docs/adding_an_op.md): this enum, its OpDef in `asgnas_ir.opdefs`,
a converter in each frontend, and an emitter for each codegen target. A test walks this enum and
fails if any of those is missing.
"""

from __future__ import annotations

from enum import Enum


class Op(str, Enum):
    """Canonical op kinds. The string value is what the JSON and the text form show."""

    # stems: carry weights and can change the channel count
    CONV = "conv"
    CONV_TRANSPOSE = "conv_transpose"
    LINEAR = "linear"
    EMBEDDING = "embedding"
    # normalisation
    BATCH_NORM = "batch_norm"
    LAYER_NORM = "layer_norm"
    GROUP_NORM = "group_norm"
    INSTANCE_NORM = "instance_norm"
    # elementwise unary
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    CLAMP = "clamp"
    GELU = "gelu"
    SILU = "silu"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    HARDSWISH = "hardswish"
    HARDSIGMOID = "hardsigmoid"
    ELU = "elu"
    SOFTPLUS = "softplus"
    MISH = "mish"
    NEG = "neg"
    EXP = "exp"
    SQRT = "sqrt"
    LOG = "log"
    SIN = "sin"
    COS = "cos"
    POW = "pow"
    IDENTITY = "identity"
    DROPOUT = "dropout"
    CAST = "cast"  # a float value rounded to another float dtype (a Keras layer's dtype policy)
    # elementwise binary (numpy broadcasting, optionally with a scalar operand)
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    # data movement
    CONCAT = "concat"
    SPLIT = "split"
    SLICE = "slice"
    RESHAPE = "reshape"
    FLATTEN = "flatten"
    PERMUTE = "permute"
    PAD = "pad"
    EXPAND = "expand"
    # pooling and reductions
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    ADAPTIVE_AVG_POOL = "adaptive_avg_pool"
    ADAPTIVE_MAX_POOL = "adaptive_max_pool"
    MEAN = "mean"
    SUM = "sum"
    MAX = "max"
    SOFTMAX = "softmax"
    CUMSUM = "cumsum"
    # resampling of the spatial axes (nearest, linear, cubic interpolation)
    RESIZE = "resize"
    # attention: products of two activations and the fused scaled-dot-product form
    MATMUL = "matmul"
    ATTENTION = "attention"
    # leaves
    CONSTANT = "constant"
    OPAQUE = "opaque"

    def __str__(self) -> str:
        return self.value


# Erasing-mode vertex taxonomy (ASGNAS Alg. 2): stems hold weights and may change the shape,
# joints merge several inputs, everything single-input is an accessory.
STEM_OPS = frozenset({Op.CONV, Op.CONV_TRANSPOSE, Op.LINEAR, Op.EMBEDDING})
NORM_OPS = frozenset({Op.BATCH_NORM, Op.LAYER_NORM, Op.GROUP_NORM, Op.INSTANCE_NORM})
UNARY_OPS = frozenset(
    {
        Op.RELU, Op.LEAKY_RELU, Op.CLAMP, Op.GELU, Op.SILU, Op.SIGMOID, Op.TANH, Op.HARDSWISH,
        Op.HARDSIGMOID, Op.ELU, Op.SOFTPLUS, Op.MISH, Op.NEG, Op.EXP, Op.SQRT, Op.LOG, Op.SIN, Op.COS, Op.POW, Op.IDENTITY, Op.DROPOUT,
        Op.CAST,
    }
)
BINARY_OPS = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV})
JOINT_OPS = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.CONCAT})
POOL_OPS = frozenset({Op.MAX_POOL, Op.AVG_POOL, Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL})
RESAMPLE_OPS = frozenset({Op.RESIZE})
