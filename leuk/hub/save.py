"""The one way leuk writes a model folder, :mod:`leuk.models.save` (on the models floor, where the training
engines reach it), under the name the loader's side has always used."""

from __future__ import annotations

from leuk.models.save import COMPUTE_DTYPE, STORAGE_DTYPES, copy_remote_code, remote_code_sources, save_model_folder

__all__ = ["COMPUTE_DTYPE", "STORAGE_DTYPES", "copy_remote_code", "remote_code_sources", "save_model_folder"]
