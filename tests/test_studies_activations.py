"""jaxgrad.studies.activations: the grid, GELU's maximum, the float32 underflow depth."""

import math

import numpy as np
import pytest

from jaxgrad.studies import activations as study


def test_grid_is_symmetric_and_contains_zero():
  x = study.grid(1.0, 0.25)
  np.testing.assert_array_equal(x, [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0])


def test_gelu_maximum_is_at_sqrt2():
  """GELU'' = phi(x)(2 - x^2): the maximum of GELU' is at x = sqrt(2), 1.1289."""
  step = 1e-4
  x = study.grid(2.0, step)
  stats = study.derivative_maximum("gelu", x)
  assert stats["argmax"] == pytest.approx(math.sqrt(2.0), abs=step / 2)
  expected = 0.5 * (1 + math.erf(1.0)) + math.sqrt(2) * math.exp(-1.0) / math.sqrt(2 * math.pi)
  # The nearest grid point is within step/2 of the maximum, where GELU'' = 0:
  # the error is at most max|GELU'''| / 2 * (step/2)^2 < (step/2)^2.
  assert expected - (step / 2) ** 2 <= stats["max_abs_derivative"] <= expected


@pytest.mark.parametrize("m, depth", [(0.25, 64), (0.5, 127), (0.9, 829), (1.0, None), (1.5, None)])
def test_underflow_depth_is_the_first_depth_below_the_smallest_normal(m, depth):
  assert study.underflow_depth(m) == depth
  if depth is not None:
    assert m**depth < study.FLOAT32_TINY <= m ** (depth - 1)
