"""Keras 3 frontend: lower Sequential and Functional models (channels-last) into the IR."""
