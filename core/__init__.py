"""Robustness Atlas engine: data, models, attacks, training, evaluation and the run registry.

Pure Python + torch; never imports streamlit. Submodules are imported lazily by their users so that
``python -m core --help`` stays instant.
"""

import os

# OpenMP threads that spin while waiting make two busy processes on one small CPU (the dashboard attacking while a
# training job runs) 4-10x slower; passive waiting removes that. libgomp reads it once, so set it before torch
# loads; an explicit setting by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# numba (under umap-learn) caches what it compiles here rather than in site-packages; read when numba loads.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.abspath(os.environ.get("ATLAS_HOME", "var")),
                                                      "cache", "numba"))

__version__ = "0.1.0"
