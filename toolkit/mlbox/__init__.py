"""mlbox: build self-contained MLPerf Inference LoadGen benchmark images from a catalog."""

__version__ = "0.1.0"
