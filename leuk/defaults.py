"""The run defaults every engine, experiment and command shares, defined once (no imports, nothing heavy).

- :data:`SEED`: the seed of a run (split, initialisation, sampling) when none is given;
- :data:`TEST_SIZE`: the share of each label's subjects held out for test;
- :data:`VAL_SIZE`: the share of each label's subjects kept for validation. It is a share of *all* subjects,
  as :func:`leuk.data.splits.train_val_test_split` takes it: test 0.2 and validation 0.15 leave train 0.65.
  Where the test part is fixed by other means (a leave-one-subject-out fold, a k-fold's held-out fold), the
  same number is the validation share of what the test part leaves.

A run records the values it used (``training_split.json``, ``run.json``, ``eval_results.json``), so changing a
default here changes future runs only; a recorded run is reproduced from its record, not from these values.
Before this module, the EfficientNet-SE engine seeded 42 and Monte Carlo kept 0.12 of all subjects for
validation (15% of the 80% left after the test part); runs made then record those values.
"""

from __future__ import annotations

__all__ = ["SEED", "TEST_SIZE", "VAL_SIZE"]

SEED = 0
TEST_SIZE = 0.2
VAL_SIZE = 0.15
