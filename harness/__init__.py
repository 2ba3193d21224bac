"""Statistical A/B benchmarking harness for the NanoGPT speedrun."""

__version__ = "0.1.0"
