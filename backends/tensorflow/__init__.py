"""TensorFlow/Keras backend: bind IR params to Keras variables and train with H2SPG."""
