"""Keras 3 frontend: lower Sequential and Functional models (channels-last) into the IR."""

from asgnas_ir.frontends.keras.driver import lower_keras

__all__ = ["lower_keras"]
