"""jaxgrad.stats: quartiles over seeds of the finite values only."""

import numpy as np

from jaxgrad import stats


def test_quartiles_ignore_what_diverged():
  samples = np.array([[1.0, np.nan], [2.0, np.inf], [3.0, -np.inf], [np.inf, np.nan], [5.0, 4.0]])
  q = stats.quartiles(samples)
  # Column 0: the finite values 1, 2, 3, 5; numpy's linear percentiles of them.
  np.testing.assert_array_equal(q["median"], [2.5, 4.0])
  np.testing.assert_array_equal(q["q25"], [1.75, 4.0])
  np.testing.assert_array_equal(q["q75"], [3.5, 4.0])
  assert q["per_seed"] is samples


def test_no_finite_value_gives_nan_without_a_warning(recwarn):
  q = stats.quartiles(np.array([np.nan, np.inf]), axis=None, keep_samples=False)
  assert set(q) == {"median", "q25", "q75"}
  assert all(np.isnan(v) for v in q.values())
  assert not recwarn.list


def test_finite_values_match_numpy():
  x = np.random.default_rng(0).normal(size=(7, 3))
  np.testing.assert_array_equal(stats.finite_percentiles(x, (10, 90)), np.percentile(x, [10, 90], axis=0))
