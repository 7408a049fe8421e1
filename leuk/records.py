"""Names of the record files a model folder or run folder holds, defined once.

Training writes them, the loader, cards, push and the OOD fit read them; every module imports the name
from here so a rename cannot leave two spellings behind.
"""

from __future__ import annotations

__all__ = ["CARD_FILE", "EVAL_RESULTS_FILE", "SPLIT_FILE"]

#: the held-out test evaluation written once after training
EVAL_RESULTS_FILE = "eval_results.json"
#: which images (patients) went into train / val / test
SPLIT_FILE = "training_split.json"
#: the model card of a model folder or Hub repo
CARD_FILE = "README.md"
