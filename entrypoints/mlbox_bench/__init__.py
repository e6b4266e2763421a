"""mlbox-bench: the in-image MLPerf LoadGen harness (onnxruntime backend).

Depends only on numpy, onnxruntime and mlperf_loadgen; never imports the host tool.
"""

__version__ = "0.1.0"
