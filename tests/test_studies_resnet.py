"""jaxgrad.studies.resnet: the per-stage norm and the zero fraction of a spectrum."""

import numpy as np

from jaxgrad.studies import resnet
from tests import _tol


def test_stage_norms_are_root_sums_of_squares_in_stage_order():
  layers = {"stage0_stem/conv": np.array([3.0]), "stage10_head/dense": np.array([1.0]),
            "stage2_block1/conv1": np.array([3.0]), "stage2_block1/conv2": np.array([4.0])}
  stages, norms = resnet.stage_norms(layers)
  assert stages == ["stage0", "stage2", "stage10"]
  np.testing.assert_allclose(norms, [[3.0, 5.0, 1.0]], **_tol.F64)


def test_zero_fraction_counts_values_below_the_relative_floor():
  sv = np.array([[1.0, 0.5, 1e-7, 0.0], [2.0, 1.0, 1.0, 1.0]])
  np.testing.assert_allclose(resnet.zero_fraction(sv), [0.5, 0.0])
