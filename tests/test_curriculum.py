"""DFFC's hardness (Eqs. 1-3) and pacing (Algorithm 1), BabyStep's pacing, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from detect.methods.curriculum.hardness import HardnessTable
from detect.methods.curriculum.pacing import babystep_pool, dffc_pool


def test_instantaneous_hardness_normalises_by_the_learning_rate_with_a_floor():
    t = HardnessTable(3, gamma=0.9, alpha_f=0.5, eta_max=0.1, eta_floor=1e-3)
    s = t.instantaneous(np.array([0.2, 0.2, 0.2]), np.array([0.1, 0.05, 0.0]))
    assert s.tolist() == pytest.approx([0.2, 0.4, 0.2 * 0.1 / 1e-4])  # η = 0 floors at 1e-3·η_max


def test_dynamic_hardness_updates_only_the_trained_hard_pool():
    t = HardnessTable(4, gamma=0.9, alpha_f=0.5, eta_max=0.1)
    # epoch 1 (warm-up): every sample, d_0 = its first loss
    t.update(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 0.1))
    assert t.d.tolist() == pytest.approx([1.0, 2.0, 3.0, 4.0])
    # epoch 2: only samples 1 and 3 are in H_t, trained at η = 0.05 (s = 2·loss)
    t.update(np.array([1, 3]), np.array([0.5, 1.0]), np.array([0.05, 0.05]))
    assert t.d.tolist() == pytest.approx([1.0, 0.9 * 1.0 + 0.1 * 2.0, 3.0, 0.9 * 2.0 + 0.1 * 4.0])
    # a sample recorded twice keeps its last record
    t.update(np.array([0, 0]), np.array([9.0, 2.0]), np.array([0.1, 0.1]))
    assert t.d[0] == pytest.approx(0.9 * 2.0 + 0.1 * 1.0)
    # Eq. 3 with the prior q = 1 - quality
    t.set_quality(np.array([1.0, 0.5, 0.0, 0.2]))
    assert t.dfh().tolist() == pytest.approx(t.d + 0.5 * np.array([0.0, 0.5, 1.0, 0.8]))
    with pytest.raises(IndexError):
        t.update(np.array([4]), np.array([1.0]), np.array([0.1]))


def test_dffc_pool_sizes_follow_algorithm_1():
    n, milestones, alpha_k, e = 100, [2, 5, 8, 12, 15], 0.9, 10
    dfh = np.linspace(0.0, 1.0, n)  # sample i has hardness i/99
    k, sizes = n, {}
    for t in range(1, 21):
        pool = dffc_pool(t, dfh, milestones, k, alpha_k, e)
        k = pool.k
        sizes[t] = (len(pool.hard), len(pool.easy), k)
    # warm-up (t <= T0 = 2): everything; t = 3, 4: k = N (k shrinks only at the milestones after T0), the easy
    # pool lies inside the hard one and is trained once (as hard)
    assert sizes[1] == sizes[2] == (100, 0, 100) and sizes[3] == sizes[4] == (100, 0, 100)
    # by hand: k = 90 at t = 5, 81 at t = 8, 73 at 12 (72.9), 66 at 15 (65.7): E = 10 easiest outside H_t
    assert sizes[5] == (90, 10, 90) and sizes[7] == (90, 10, 90)
    assert sizes[8] == (81, 10, 81) and sizes[12] == (73, 10, 73) and sizes[15] == (66, 10, 66)
    assert sizes[20] == (66, 10, 66)
    pool = dffc_pool(5, dfh, milestones, 100, alpha_k, e)
    assert pool.hard.tolist() == list(range(10, 100)) and pool.easy.tolist() == list(range(10))
    assert pool.augment
    # without DA the easy pool is the same set, trained as it is
    plain = dffc_pool(5, dfh, milestones, 100, alpha_k, e, augment_easy=False)
    assert plain.easy.tolist() == list(range(10)) and not plain.augment


def test_dffc_pool_ties_are_broken_by_index():
    # equal DFH: the lowest indices count as hardest and as easiest, so every process picks the same pools
    pool = dffc_pool(5, np.zeros(10), [2, 5], 10, 0.5, 2)
    assert pool.hard.tolist() == [0, 1, 2, 3, 4] and pool.easy.tolist() == []


def test_babystep_pool_grows_in_equal_steps_from_the_easiest():
    hardness = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0, 0.95, 0.05])  # N = 12
    ms = [2, 5, 8, 12, 15]  # m = 5: fractions 1/6 .. 6/6
    sizes = {t: len(babystep_pool(t, hardness, ms).hard) for t in (1, 2, 4, 5, 8, 12, 15, 20)}
    assert sizes == {1: 2, 2: 4, 4: 4, 5: 6, 8: 8, 12: 10, 15: 12, 20: 12}
    assert babystep_pool(1, hardness, ms).hard.tolist() == [9, 11]  # the two easiest
    with_da = babystep_pool(5, hardness, ms, n_easy=2, augment_easy=True)
    assert with_da.easy.tolist() == [9, 11] and len(with_da.hard) == 4 and with_da.augment
