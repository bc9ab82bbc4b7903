"""The backends' weight readers: how `Graph.update_weights(model)` reads a live torch or Keras model.

The IR imports no framework, no frontend and no backend (NOTE: [Weight readers] in
`asgnas_ir.ir.weights`); it reads a model through the readers registered here. `asgnas_ir.api`
imports this module, so they are in place as soon as `asgnas_ir` is. Nothing here imports a
framework: a predicate looks only at a framework already in `sys.modules` (a model of it exists,
so it is), and a reader imports its binding when it is first given a model of its framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from asgnas_ir.frontends import is_keras_model, is_torch_module
from asgnas_ir.ir.weights import register_weight_reader


def read_torch(model: Any) -> Mapping[str, Any]:
    """Every parameter and buffer of a torch module by its path (`live_tensors`), read through a
    DistributedDataParallel / DataParallel wrapper as `ai.compile` does."""
    from asgnas_ir.backends.torch.binding import live_tensors
    from asgnas_ir.frontends import unwrap_torch_parallel

    return live_tensors(unwrap_torch_parallel(model))


def read_keras(model: Any) -> Mapping[str, Any]:
    """Every variable of a Keras model by its unique key, in the param's IR view: the value the Keras
    frontend stores (`Builder.add_param`), and for a LoRA-enabled layer's base kernel the effective
    `kernel + scale · A @ B` (`Builder.add_kernel`)."""
    import keras

    from asgnas_ir.frontends.keras.variables import variable_table

    values: dict[str, Any] = {}
    for entry in variable_table(model):
        if entry.lora is None:
            value = np.asarray(keras.ops.convert_to_numpy(entry.variable.value)).reshape(entry.view)
        else:
            lora = entry.lora
            merged = keras.ops.add(
                entry.variable.value, lora.scale * keras.ops.matmul(lora.a.value, lora.b.value)
            )
            value = np.asarray(keras.ops.convert_to_numpy(merged))
        values[entry.key] = value
    return values


register_weight_reader("torch", is_torch_module, read_torch)
register_weight_reader("keras", is_keras_model, read_keras)
