"""The release matrix (`parity matrix`): every avatar x backend x precision x device judged in one run, against the
reference and against the last release, locally or on Ray.

`spec.py` reads the matrix file into cells; `cell.py` runs one cell where it runs (the run, the comparison, the
speed); `local.py` and `ray_executor.py` run cells on this machine's workers or a Ray cluster's; `baseline.py`
compares with a previous matrix under noise bands; `run.py` ties it together and writes `matrix.json`
(`result.py`, types in `types.py`). The reports (`reports/matrix.py`) render the `MatrixResult`.
"""
