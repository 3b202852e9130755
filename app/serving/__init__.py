"""The serving core, in TF Serving's words: the source (source.py) emits aspired versions; the loader
(lifecycle.py, reading files with loader.py and legacy/) makes each servable version (servable.py) AVAILABLE
with a runtime (runtime.py, tflite_runtime.py) and a batcher (batching.py); the manager (registry.py) holds
them and applies the version policy."""
