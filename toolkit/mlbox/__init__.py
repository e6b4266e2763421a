"""mlbox: build self-contained MLPerf Inference LoadGen benchmark images from a catalog."""

__version__ = "0.1.0"

# The distribution's name on PyPI (`mlbox` there is an unrelated AutoML library); the
# commands stay `mlbox` and `mlbox-bench`, the import packages `mlbox` and `mlbox_bench`.
DISTRIBUTION = "mlbox-mlperf"
