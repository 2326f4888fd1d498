"""jaxgrad.studies.jacobian_spectra: measured spectra against free probability, summaries, agreement."""

import jax
import numpy as np
import pytest

from jaxgrad.studies import jacobian_spectra
from tests import _tol


@pytest.mark.parametrize("activation, weights, per_layer", [
    ("linear", "gaussian", 1), ("relu", "gaussian", 2), ("relu", "orthogonal", 1)])
def test_measured_variance_matches_theory_at_small_depth(activation, weights, per_layer):
  """The issue's bar, at a width small enough for a test: depth <= width/16, 32 seeds, 15%."""
  depths = (1, 2, 4, 6)
  s2 = jacobian_spectra.squared_singular_values(
      activation, jacobian_spectra.critical_sigma_w2(activation), weights, width=96,
      depths=depths, seeds=32, key=jax.random.key(0))
  assert s2.shape == (32, len(depths), 96)
  measured = s2.var(axis=-1).mean(axis=0)
  np.testing.assert_allclose(measured, per_layer * np.asarray(depths),
                             rtol=jacobian_spectra.AGREEMENT_RTOL)


def test_linear_orthogonal_spectrum_is_exactly_one():
  s2 = jacobian_spectra.squared_singular_values("linear", 1.0, "orthogonal", width=8,
                                                depths=(1, 3), seeds=2, key=jax.random.key(1))
  np.testing.assert_allclose(s2, 1.0, rtol=1e-5)


def test_over_seeds_mean_sem_and_quartiles():
  per_seed = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
  summary = jacobian_spectra.over_seeds(per_seed)
  np.testing.assert_allclose(summary["mean"], [2.5, 25.0], **_tol.F64)
  np.testing.assert_allclose(summary["sem"], per_seed.std(0, ddof=1) / 2, **_tol.F64)
  np.testing.assert_allclose(summary["median"], [2.5, 25.0], **_tol.F64)
  np.testing.assert_allclose(summary["q25"], [1.75, 17.5], **_tol.F64)
  assert np.isnan(jacobian_spectra.over_seeds(per_seed[:1])["sem"])


def test_log_density_integrates_to_the_resolvable_fraction():
  s2 = np.exp(np.random.default_rng(0).normal(size=(4, 1, 16)))
  s2[0, 0, :4] = 0.0  # a quarter of one seed's values: exact zeros, not resolvable
  bins = jacobian_spectra.log_bins(s2)
  dens = jacobian_spectra.log_density(s2, 0, bins)
  assert dens["unresolved_fraction"] == pytest.approx(4 / 64)
  assert np.sum(dens["density"] * np.diff(bins)) == pytest.approx(60 / 64)


def test_agreement_checks_only_small_depths_with_nonzero_theory():
  cases = {
      "a": {"depths": (1, 2, 64), "var_sq": {"mean": [1.1, 2.0, 100.0]},
            "theory": {"var_sq": [1.0, 2.0, 64.0]}},
      "b": {"depths": (1, 2, 64), "var_sq": {"mean": [0.0, 0.0, 0.0]},
            "theory": {"var_sq": [0.0, 0.0, 0.0]}},
  }
  out = jacobian_spectra.agreement(cases, width=64)
  assert out["a"]["max_rel_error_small_depth"] == pytest.approx(0.1)
  assert out["a"]["within_rtol"] is True
  assert out["b"]["within_rtol"] is None and out["b"]["max_rel_error_small_depth"] is None
