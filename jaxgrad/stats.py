"""Summaries over seeds that ignore what diverged.

A seed whose measurement overflowed (``inf``) or was undefined (``NaN``: a
0/0 condition number, a diverged run) must not hide the others, so every
statistic here is taken over the finite values only; a point where no seed is
finite is ``NaN``.
"""

import warnings

import numpy as np


def finite_percentiles(samples: np.ndarray, percentiles: tuple[float, ...],
                       axis: int | None = 0) -> np.ndarray:
  """Percentiles of ``samples`` over ``axis``, of the finite values only.

  Args:
    samples: the values, seeds along ``axis``.
    percentiles: which, in [0, 100].
    axis: the axis of seeds; ``None``: all values at once.

  Returns:
    ``(len(percentiles), ...)``: NaN where no value is finite.
  """
  samples = np.asarray(samples, dtype=float)
  finite = np.where(np.isfinite(samples), samples, np.nan)
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are expected
    return np.nanpercentile(finite, percentiles, axis=axis)


def quartiles(samples: np.ndarray, axis: int | None = 0, *,
              keep_samples: bool = True) -> dict[str, np.ndarray]:
  r"""Median and quartiles over seeds, of the finite values.

  Args:
    samples: the values, seeds along ``axis`` (e.g. ``(seeds, layers)``).
    axis: the axis of seeds; ``None``: all values at once.
    keep_samples: also return ``samples`` themselves, as ``"per_seed"``.

  Returns:
    ``{"median", "q25", "q75"}`` (and ``"per_seed"``): the 50th, 25th and 75th
    percentiles, :math:`q_p = \mathrm{percentile}_p\{x_s : x_s \text{ finite}\}`.
  """
  q25, median, q75 = finite_percentiles(samples, (25, 50, 75), axis)
  summary = {"median": median, "q25": q25, "q75": q75}
  if keep_samples:
    summary["per_seed"] = samples
  return summary
