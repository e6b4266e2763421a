"""mlbox-bench: the in-image MLPerf LoadGen harness (flags and variables -> LoadGen
settings -> a backend -> a runner -> LoadGen -> MLPerf logs and result.json).

Depends on numpy, mlperf_loadgen and the image's one backend library (onnxruntime,
PyTorch, TensorFlow or LiteRT); never imports the host tool.
"""

__version__ = "0.1.0"
