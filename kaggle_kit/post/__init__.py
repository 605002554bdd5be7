"""Post-processing: numba kernels and numpy twins, ensemble, metric, tuning (import the submodules)."""
