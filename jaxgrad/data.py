"""Datasets that need no download: MNIST-1D generated locally, scikit-learn's digits.

Every loader returns a :class:`Dataset` of numpy arrays with a deterministic
train/test split; :func:`sample_batch` draws a batch inside jitted code.
"""

import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Dataset(NamedTuple):
  x_train: np.ndarray  # (n_train, features) float32
  y_train: np.ndarray  # (n_train,) int32 class labels
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int


def _cache_dir() -> pathlib.Path:
  root = os.environ.get("JAXGRAD_CACHE", pathlib.Path.home() / ".cache" / "jaxgrad")
  return pathlib.Path(root)


def mnist1d(cache_dir: str | pathlib.Path | None = None) -> Dataset:
  """MNIST-1D (Greydanus 2020): 4000 train / 1000 test signals of length 40, 10 classes.

  Generated locally by the ``mnist1d`` package with its own default arguments
  (seed 42), never downloaded, and cached as ``mnist1d.npz`` under
  ``cache_dir`` (default ``$JAXGRAD_CACHE`` or ``~/.cache/jaxgrad``).

  Raises:
    ImportError: naming the extra to install when ``mnist1d`` is missing.
  """
  path = pathlib.Path(cache_dir or _cache_dir()) / "mnist1d.npz"
  if not path.exists():
    try:
      from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
      raise ImportError("MNIST-1D needs the 'mnist1d' package: pip install 'jaxgrad[data]'") from e
    d = make_dataset(get_dataset_args())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, x_train=d["x"], y_train=d["y"], x_test=d["x_test"], y_test=d["y_test"])
    os.replace(tmp, path)
  with np.load(path) as f:
    return Dataset(f["x_train"].astype(np.float32), f["y_train"].astype(np.int32),
                   f["x_test"].astype(np.float32), f["y_test"].astype(np.int32), 10)


def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
  """scikit-learn's 8x8 digits (1797 images, shipped with the package), pixels / 16.

  The split is a fixed permutation drawn with ``seed``.
  """
  try:
    from sklearn.datasets import load_digits
  except ImportError as e:
    raise ImportError("digits needs scikit-learn: pip install 'jaxgrad[data]'") from e
  d = load_digits()
  x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
  order = np.random.default_rng(seed).permutation(len(x))
  n_test = int(round(test_fraction * len(x)))
  test, train = order[:n_test], order[n_test:]
  return Dataset(x[train], y[train], x[test], y[test], 10)


def standardize(ds: Dataset) -> Dataset:
  """Zero mean, unit variance per feature, with the training set's statistics."""
  mean, std = ds.x_train.mean(0), ds.x_train.std(0) + 1e-8
  return ds._replace(x_train=(ds.x_train - mean) / std, x_test=(ds.x_test - mean) / std)


def sample_batch(key: jax.Array, x: jax.Array, y: jax.Array, batch_size: int):
  """``batch_size`` examples drawn uniformly with replacement; jit-able."""
  idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
  return jnp.take(x, idx, axis=0), jnp.take(y, idx, axis=0)
