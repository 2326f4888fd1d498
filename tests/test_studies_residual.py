"""jaxgrad.studies.residual: signal positions, the mean-field predictions, one small measurement."""

import numpy as np
import pytest

from jaxgrad.studies import residual


def test_positions_count_dense_layers_from_the_input():
  np.testing.assert_array_equal(residual.positions("residual", 3), [1, 1, 3, 5, 8])
  np.testing.assert_array_equal(residual.positions("plain", 3), np.arange(1, 9))


def test_he_relu_residual_branch_triples_signal_and_spectrum_per_block():
  t = residual.predicted("residual", "relu", "none", blocks=4)
  assert t["growth_per_block"] == pytest.approx(3.0, rel=1e-3)
  np.testing.assert_allclose(t["mean_sq"], 3.0 ** np.arange(1, 5), rtol=1e-3)


def test_he_relu_plain_net_is_critical():
  t = residual.predicted("plain", "relu", "none", blocks=4)
  np.testing.assert_allclose(t["signal_sq"], 1.0, rtol=1e-3)
  np.testing.assert_allclose(t["mean_sq"], 1.0, rtol=1e-3)
  assert t["growth_per_block"] == pytest.approx(1.0, rel=1e-3)
  assert residual.predicted("plain", "relu", "layer", blocks=4) is None


def test_measure_shapes_and_relative_signal():
  m = residual.measure("residual", "relu", "none", width=8, blocks=3, batch=4, seeds=2)
  assert m["signal"].shape == (2, 5) and m["q"].shape == (2, 3) and m["s"].shape == (2, 3, 8)
  np.testing.assert_allclose(m["signal"][:, -1], 1.0, rtol=1e-12)
  np.testing.assert_allclose(m["mean_sq"], np.mean(m["s"] ** 2, axis=-1), rtol=1e-12)
  assert np.all(np.diff(m["s"], axis=-1) <= 0)
  assert residual.block_signal(m["signal"], "residual", 3).shape == (2, 3)
