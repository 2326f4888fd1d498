"""Datasets: MNIST-1D generated locally, scikit-learn's digits, real MNIST from IDX files.

Nothing is ever downloaded. Every loader returns a :class:`Dataset` of numpy
arrays with a deterministic train/test split; :func:`load` picks a dataset by
name. :func:`jaxgrad.data.sample_batch` draws batches from it inside jit.
"""

import gzip
import os
import pathlib
import zlib
from typing import NamedTuple

import numpy as np

from jaxgrad import _checks
from jaxgrad import files

DATASETS = ("mnist1d", "digits", "mnist")


class Dataset(NamedTuple):
  """A train/test split of numpy arrays."""

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
    with files.atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file: savez adds no suffix
      np.savez(f, x_train=d["x"], y_train=d["y"], x_test=d["x_test"], y_test=d["y_test"])
  with np.load(path) as f:
    return Dataset(f["x_train"].astype(np.float32), f["y_train"].astype(np.int32),
                   f["x_test"].astype(np.float32), f["y_test"].astype(np.int32), 10)


def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
  """scikit-learn's 8x8 digits (1797 images, shipped with the package), pixels / 16.

  The split is a fixed permutation drawn with ``seed``.

  Raises:
    ValueError: for a ``test_fraction`` outside (0, 1).
  """
  _checks.require_real("test_fraction", test_fraction)
  if not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
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


# IDX (LeCun's MNIST format): big-endian magic 0x0000 <type> <ndim>, ndim big-endian
# uint32 sizes, then the data. Type codes -> numpy big-endian dtypes.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | pathlib.Path) -> np.ndarray:
  """Reads one IDX file (optionally gzipped, by its ``.gz`` suffix) into a numpy array.

  Raises:
    ValueError: naming the file when it is not IDX (bad magic, header or
      size) or, for ``.gz``, not a complete gzip stream.
  """
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (gzip.BadGzipFile, EOFError, zlib.error) as e:
    raise ValueError(f"{path} is not a complete gzip file ({e}); its .gz suffix asks for one") from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
    raise ValueError(f"{path} is not an IDX file (bad magic {raw[:4]!r}); expected "
                     f"0x0000 followed by a type code in {sorted(_IDX_TYPES)} and ndim")
  ndim = raw[3]
  if len(raw) < 4 + 4 * ndim:
    raise ValueError(f"{path}: the header announces {ndim} dimensions ({4 + 4 * ndim} bytes), "
                     f"the file has {len(raw)} bytes")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
  dtype = np.dtype(_IDX_TYPES[raw[2]])
  expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
  if len(raw) != expected:
    raise ValueError(f"{path}: header says shape {shape} of {dtype} ({expected} bytes), "
                     f"file has {len(raw)} bytes")
  return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: pathlib.Path, stem: str) -> pathlib.Path:
  for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
    if (directory / name).exists():
      return directory / name
  raise FileNotFoundError(f"no {stem}[.gz] in {directory}; the real MNIST loader needs the four "
                          f"IDX files {sorted(MNIST_FILES.values())} (it never downloads)")


def mnist(directory: str | pathlib.Path) -> Dataset:
  """Real MNIST (LeCun et al. 1998) from the four IDX files in ``directory``.

  Files may be gzipped (``*.gz``). Images are flattened to 784 features and
  scaled to [0, 1]; the split is the official 60000/10000 one.

  Raises:
    FileNotFoundError: naming the missing file; ValueError for a malformed one.
  """
  directory = pathlib.Path(directory)
  arrays = {k: read_idx(_find(directory, stem)) for k, stem in MNIST_FILES.items()}
  for part in ("train", "test"):
    if len(arrays[f"x_{part}"]) != len(arrays[f"y_{part}"]):
      raise ValueError(f"{directory}: {part} images ({len(arrays[f'x_{part}'])}) and labels "
                       f"({len(arrays[f'y_{part}'])}) differ in number")
  flat = lambda x: (x.reshape(len(x), -1) / 255.0).astype(np.float32)  # noqa: E731
  return Dataset(flat(arrays["x_train"]), arrays["y_train"].astype(np.int32),
                 flat(arrays["x_test"]), arrays["y_test"].astype(np.int32), 10)


def load(name: str, *, mnist_dir: str | pathlib.Path | None = None) -> Dataset:
  """A dataset by name (one of :data:`DATASETS`), standardized per feature.

  ``"mnist"`` needs ``mnist_dir``, the folder with the four IDX files.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; valid choices: {DATASETS}")
  if name == "mnist":
    if mnist_dir is None:
      raise ValueError("dataset 'mnist' needs mnist_dir, the folder holding the IDX files")
    return standardize(mnist(mnist_dir))
  return standardize(mnist1d() if name == "mnist1d" else digits())
