"""Data: real datasets, synthetic sequence tasks, and batches in one convention (:class:`Batch`).

* :mod:`jaxgrad.data.datasets`: MNIST-1D generated locally, scikit-learn's
  digits, real MNIST from IDX files; a :class:`Dataset` of numpy arrays.
* :mod:`jaxgrad.data.tasks`: sine sequences and the adding problem, ``(x, y)``
  arrays drawn from a PRNG key.
* :mod:`jaxgrad.data.batches`: every sampler ``key -> batch`` returns a
  ``Batch(x, y, weight)`` (weight 0 marks padding).
"""

from jaxgrad.data.batches import Batch as Batch
from jaxgrad.data.batches import as_batch as as_batch
from jaxgrad.data.batches import batches_per_epoch as batches_per_epoch
from jaxgrad.data.batches import epoch_batches as epoch_batches
from jaxgrad.data.batches import epoch_sampler as epoch_sampler
from jaxgrad.data.batches import sample_batch as sample_batch
from jaxgrad.data.batches import weighted_mse as weighted_mse
from jaxgrad.data.datasets import DATASETS as DATASETS
from jaxgrad.data.datasets import MNIST_FILES as MNIST_FILES
from jaxgrad.data.datasets import Dataset as Dataset
from jaxgrad.data.datasets import digits as digits
from jaxgrad.data.datasets import load as load
from jaxgrad.data.datasets import mnist as mnist
from jaxgrad.data.datasets import mnist1d as mnist1d
from jaxgrad.data.datasets import read_idx as read_idx
from jaxgrad.data.datasets import standardize as standardize
from jaxgrad.data.tasks import adding_problem as adding_problem
from jaxgrad.data.tasks import sine_sequences as sine_sequences

__all__ = [
    "Batch",
    "DATASETS",
    "Dataset",
    "MNIST_FILES",
    "adding_problem",
    "as_batch",
    "batches_per_epoch",
    "digits",
    "epoch_batches",
    "epoch_sampler",
    "load",
    "mnist",
    "mnist1d",
    "read_idx",
    "sample_batch",
    "sine_sequences",
    "standardize",
    "weighted_mse",
]
