"""Datasets: IDX round trip on files the test writes, shapes, determinism, batching."""

import gzip
import struct

import jax
import numpy as np
import pytest

from jaxgrad import data
from jaxgrad.data import datasets


def _write_idx(path, array, type_code=0x08, compress=False):
  header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  payload = header + array.astype(np.dtype(datasets._IDX_TYPES[type_code])).tobytes()
  opener = gzip.open if compress else open
  with opener(path, "wb") as f:
    f.write(payload)


@pytest.fixture
def tiny_mnist(tmp_path):
  rng = np.random.default_rng(0)
  arrays = {"x_train": rng.integers(0, 256, (5, 28, 28)), "y_train": rng.integers(0, 10, 5),
            "x_test": rng.integers(0, 256, (3, 28, 28)), "y_test": rng.integers(0, 10, 3)}
  for key, stem in data.MNIST_FILES.items():
    _write_idx(tmp_path / (stem + (".gz" if key == "x_test" else "")), arrays[key],
               compress=key == "x_test")
  return tmp_path, arrays


def test_mnist_idx_loader_reads_what_was_written(tiny_mnist):
  directory, arrays = tiny_mnist
  ds = data.mnist(directory)
  assert ds.x_train.shape == (5, 784) and ds.x_test.shape == (3, 784)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  np.testing.assert_array_equal(ds.x_train * 255.0, arrays["x_train"].reshape(5, -1))
  np.testing.assert_array_equal(ds.x_test * 255.0, arrays["x_test"].reshape(3, -1))
  np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
  assert data.load("mnist", mnist_dir=directory).x_train.shape == (5, 784)


def test_idx_reads_big_endian_floats(tmp_path):
  a = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
  _write_idx(tmp_path / "f.idx", a, type_code=0x0D)
  np.testing.assert_array_equal(data.read_idx(tmp_path / "f.idx"), a)


def test_bad_idx_and_missing_files_are_clear_errors(tmp_path, tiny_mnist):
  (tmp_path / "junk").write_bytes(b"PK\x03\x04rest")
  with pytest.raises(ValueError, match="is not an IDX file"):
    data.read_idx(tmp_path / "junk")
  _write_idx(tmp_path / "short", np.zeros((4, 2)))
  (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
  with pytest.raises(ValueError, match=r"header says shape \(4, 2\)"):
    data.read_idx(tmp_path / "short")
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    data.mnist(tmp_path / "nowhere")


@pytest.mark.parametrize("damage", ["not gzip", "truncated gzip", "truncated header"])
def test_corrupt_files_are_errors_naming_the_path(tmp_path, damage):
  _write_idx(tmp_path / "f", np.zeros((4, 2), np.uint8))
  raw = (tmp_path / "f").read_bytes()
  path = tmp_path / ("f.gz" if "gzip" in damage else "f")
  if damage == "not gzip":
    path.write_bytes(raw)
    match = "is not a complete gzip file"
  elif damage == "truncated gzip":
    path.write_bytes(gzip.compress(raw)[:-12])
    match = "is not a complete gzip file"
  else:
    path.write_bytes(raw[:9])  # magic (4 bytes), one of two dimensions and a byte
    match = r"announces 2 dimensions \(12 bytes\), the file has 9 bytes"
  with pytest.raises(ValueError, match=match) as error:
    data.read_idx(path)
  assert str(path) in str(error.value)
  with pytest.raises(ValueError, match="unknown dataset 'cifar'; valid choices"):
    data.load("cifar")
  with pytest.raises(ValueError, match="needs mnist_dir"):
    data.load("mnist")


def test_digits_shapes_and_deterministic_split():
  a, b = data.digits(), data.digits()
  assert a.x_train.shape == (1438, 64) and a.x_test.shape == (359, 64) and a.num_classes == 10
  np.testing.assert_array_equal(a.y_test, b.y_test)
  assert not np.array_equal(a.y_test, data.digits(seed=1).y_test)
  assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0


def test_mnist1d_is_generated_once_and_cached():
  ds = data.mnist1d()  # the session's cache (conftest): generated at most once per session
  assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
  assert set(np.unique(ds.y_train)) == set(range(10))
  assert (datasets._cache_dir() / "mnist1d.npz").exists()
  np.testing.assert_array_equal(ds.x_test, data.mnist1d().x_test)


def test_standardize_uses_training_statistics():
  ds = data.standardize(data.digits())
  np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)
  used = ds.x_train.std(0) > 0
  np.testing.assert_allclose(ds.x_train.std(0)[used], 1.0, rtol=1e-3)


def test_sample_batch_is_a_deterministic_function_of_the_key():
  x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
  draw = jax.jit(lambda k: data.sample_batch(k, x, y, 4))
  (xa, ya, wa), (xb, yb, _) = draw(jax.random.key(0)), draw(jax.random.key(0))
  np.testing.assert_array_equal(wa, np.ones(4))  # a Batch; every drawn example counts
  np.testing.assert_array_equal(xa, xb)
  np.testing.assert_array_equal(ya, yb)
  np.testing.assert_array_equal(xa[:, 0], 2.0 * np.asarray(ya))  # rows stay paired
  assert not np.array_equal(ya, draw(jax.random.key(1))[1])
