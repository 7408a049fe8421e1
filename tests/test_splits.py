"""Patient-grouped splits: property tests with hypothesis, reproducibility, and the leaky image protocol."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leuk.data.splits import (
    Split,
    grouped_kfold,
    monte_carlo_splits,
    patient_set_hash,
    train_val_test_split,
)


@st.composite
def cohorts(draw, max_patients: int = 30, n_classes: int = 2):
    """(labels, groups) of rows: each patient has one label and 1-5 images, listed in shuffled order."""
    patient_labels = draw(st.lists(st.integers(0, n_classes - 1), min_size=1, max_size=max_patients))
    sizes = draw(st.lists(st.integers(1, 5), min_size=len(patient_labels), max_size=len(patient_labels)))
    groups = np.repeat([f"p{i}" for i in range(len(sizes))], sizes)
    labels = np.repeat(patient_labels, sizes)
    order = np.random.default_rng(draw(st.integers(0, 2**16))).permutation(len(labels))
    return labels[order], groups[order]


def _assert_partition(split: Split, n_rows: int) -> None:
    everything = np.concatenate([split.train, split.val, split.test])
    assert np.array_equal(np.sort(everything), np.arange(n_rows)), "every index in exactly one part"


def _assert_grouped(split: Split, groups: np.ndarray) -> None:
    parts = [set(groups[split.train]), set(groups[split.val]), set(groups[split.test])]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


@settings(max_examples=60)
@given(cohort=cohorts(), seed=st.integers(0, 2**32 - 1), test_size=st.sampled_from([0.1, 0.2, 0.3]),
       val_size=st.sampled_from([0.0, 0.15, 0.25]))
def test_patient_split_properties(cohort, seed, test_size, val_size):
    labels, groups = cohort
    split = train_val_test_split(labels, groups, test_size=test_size, val_size=val_size, seed=seed)
    assert split.protocol == "patient" and split.train.dtype == np.int64
    _assert_partition(split, len(labels))
    _assert_grouped(split, groups)
    assert set(labels[split.train]) == set(labels), "every class with a patient is present in train"
    if len(set(groups)) >= 3 and test_size > 0:
        assert len(split.test) > 0


@settings(max_examples=30)
@given(cohort=cohorts(n_classes=4), seed=st.integers(0, 2**32 - 1))
def test_image_protocol_partitions_rows_and_keeps_all_classes_in_train(cohort, seed):
    labels, groups = cohort
    split = train_val_test_split(labels, groups, seed=seed, protocol="image")
    assert split.protocol == "image"
    _assert_partition(split, len(labels))
    assert set(labels[split.train]) == set(labels)


@settings(max_examples=25)
@given(cohort=cohorts(max_patients=20), seed=st.integers(0, 2**16), n_iter=st.integers(1, 4))
def test_monte_carlo_splits_are_grouped_and_reproducible(cohort, seed, n_iter):
    labels, groups = cohort
    runs = list(monte_carlo_splits(labels, groups, n_iter=n_iter, seed=seed))
    assert [iteration for iteration, _, _ in runs] == list(range(n_iter))
    for _, iteration_seed, split in runs:
        _assert_partition(split, len(labels))
        _assert_grouped(split, groups)
        again = train_val_test_split(labels, groups, seed=iteration_seed)
        assert np.array_equal(again.test, split.test) and np.array_equal(again.train, split.train)


def test_monte_carlo_seeds_come_from_seed_sequence_and_ignore_n_iter():
    labels, groups = np.array([0, 0, 1, 1, 0, 1] * 4), np.repeat(np.arange(12), 2)
    short = [s for _, s, _ in monte_carlo_splits(labels, groups, n_iter=3, seed=42)]
    long = [s for _, s, _ in monte_carlo_splits(labels, groups, n_iter=6, seed=42)]
    assert long[:3] == short and len(set(long)) == 6
    oracle = [int(c.generate_state(1, dtype=np.uint32)[0]) for c in np.random.SeedSequence(42).spawn(3)]
    assert short == oracle


def test_split_sizes_follow_fractions_and_stratify_patients():
    patient_labels = np.array([1] * 60 + [0] * 40)
    groups = np.repeat(np.arange(100), 3)
    labels = np.repeat(patient_labels, 3)
    split = train_val_test_split(labels, groups, test_size=0.2, val_size=0.15, seed=0)
    for part, fraction in ((split.test, 0.2), (split.val, 0.15)):
        part_patients = np.unique(groups[part])
        assert len(part_patients) == pytest.approx(100 * fraction, abs=1)
        assert patient_labels[part_patients].mean() == pytest.approx(0.6, abs=0.05)


def test_same_seed_same_split_and_seeds_differ():
    labels, groups = np.tile([0, 1], 40), np.repeat(np.arange(20), 4)
    a = train_val_test_split(labels, groups, seed=5)
    b = train_val_test_split(labels, groups, seed=5)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.val, b.val)
    assert any(not np.array_equal(a.test, train_val_test_split(labels, groups, seed=s).test) for s in range(6, 10))


def test_unknown_protocol_and_bad_inputs_raise():
    labels, groups = [0, 1, 0, 1], ["a", "b", "c", "d"]
    for protocol in ("stratified", "Patient", "subject"):
        with pytest.raises(ValueError, match="protocol"):
            train_val_test_split(labels, groups, seed=0, protocol=protocol)
        with pytest.raises(ValueError, match="protocol"):
            list(monte_carlo_splits(labels, groups, n_iter=1, seed=0, protocol=protocol))
    with pytest.raises(ValueError, match="equally long"):
        train_val_test_split([0, 1], ["a"], seed=0)
    with pytest.raises(ValueError, match="sum below 1"):
        train_val_test_split(labels, groups, seed=0, test_size=0.6, val_size=0.5)


def test_image_protocol_leaks_patients_across_parts():
    labels, groups = np.repeat([0, 1] * 5, 10), np.repeat(np.arange(10), 10)
    split = train_val_test_split(labels, groups, seed=0, protocol="image")
    assert set(groups[split.train]) & set(groups[split.test]), "image-level splits share patients (that is the leak)"


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
@settings(max_examples=15)
@given(cohort=cohorts(max_patients=25), seed=st.integers(0, 2**16), k=st.integers(2, 5), val=st.sampled_from([0.0, 0.2]))
def test_grouped_kfold_tests_every_row_once(cohort, seed, k, val):
    labels, groups = cohort
    if len(set(groups)) < k:
        with pytest.raises(ValueError, match="between 2 and the number of patients"):
            grouped_kfold(labels, groups, k, seed)
        return
    folds = grouped_kfold(labels, groups, k, seed, val_size=val)
    assert len(folds) == k
    tested = np.sort(np.concatenate([fold.test for fold in folds]))
    assert np.array_equal(tested, np.arange(len(labels)))
    for fold in folds:
        _assert_partition(fold, len(labels))
        _assert_grouped(fold, groups)


def test_patient_set_hash_matches_sha256_of_sorted_unique_ids():
    ids = ["H10", "3", "prelim:57", "3", "H10"]
    expected = hashlib.sha256("3\nH10\nprelim:57".encode()).hexdigest()[:16]
    assert patient_set_hash(ids) == expected == patient_set_hash(reversed(ids))
    assert len(expected) == 16 and patient_set_hash(["3"]) != expected


def _rare_cohort():
    """3 subjects of class 0 and 10 of class 1, 4-9 images each, rows shuffled."""
    rng = np.random.default_rng(3)
    subjects = [f"H{i}" for i in range(3)] + [f"A{i}" for i in range(10)]
    sizes = rng.integers(4, 10, len(subjects))
    groups = np.repeat(subjects, sizes)
    labels = np.repeat([0] * 3 + [1] * 10, sizes)
    order = rng.permutation(len(labels))
    return labels[order], groups[order]


def test_leave_one_rare_subject_out_tests_every_subject_once():
    from leuk.data.splits import leave_one_rare_subject_out

    labels, groups = _rare_cohort()
    splits = leave_one_rare_subject_out(labels, groups, seed=0, val_size=0.2)
    assert len(splits) == 3  # one fold per subject of the rarer class
    tested = np.concatenate([groups[s.test] for s in splits])
    assert sorted(set(tested)) == sorted(set(groups)) and len(tested) == len(groups)
    for fold, split in enumerate(splits):
        test_subjects = set(groups[split.test])
        assert {g for g in test_subjects if g.startswith("H")} == {f"H{fold}"}
        assert test_subjects.isdisjoint(groups[split.train]) and test_subjects.isdisjoint(groups[split.val])
        # validation comes from the training subjects' images, never from a test subject
        assert set(groups[split.val]) <= set(groups[split.train])
        assert set(np.unique(labels[split.train])) == {0, 1} and set(np.unique(labels[split.test])) == {0, 1}
        assert len(np.intersect1d(split.train, split.val)) == 0
        assert len(split.train) + len(split.val) + len(split.test) == len(labels)
    again = leave_one_rare_subject_out(labels, groups, seed=0, val_size=0.2)
    assert all(np.array_equal(a.val, b.val) and np.array_equal(a.test, b.test) for a, b in zip(splits, again))


def test_leave_one_rare_subject_out_refuses_too_few_subjects():
    from leuk.data.splits import leave_one_rare_subject_out

    with pytest.raises(ValueError, match="two subjects"):
        leave_one_rare_subject_out([0, 0, 1, 1], ["a", "a", "b", "b"], seed=0)
