"""`python -m app.cli optimize`: a Keras file to a smaller TFLite file, with a report of what it costs.

`data` reads calibration and evaluation arrays, `prune` zeroes the smallest kernel weights, `report` measures
the original against the optimized file, `command` is the CLI. TensorFlow is reached only through
`app.serving.runtime` and `app.serving.loader`; the optimized file runs on LiteRT like any served `.tflite`.
"""
