"""Robustness Atlas engine: data, models, attacks, training, evaluation and the run registry.

Pure Python + torch; never imports streamlit. Submodules are imported lazily by their users so that
``python -m core --help`` stays instant.
"""

__version__ = "0.1.0"
