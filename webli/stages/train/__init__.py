"""The bundled reference CLIP trainer: model configs, WebDataset loading, training loop, evaluation.

Pure functions and small classes with no Dask imports; `webli.pipeline.train`
runs them for `webli train` and `webli bootstrap-filter`.
"""
