r"""The normalisation layer of a block, given by name or as a module constructor.

A block's ``norm`` is ``None``, a name in :data:`NORMS`, or a constructor
(``ModuleDef``) called as ``norm(name="norm")`` whose instance maps ``z`` to
:math:`\mathrm{norm}(z)`, as Flax's ``examples/imagenet`` passes
``norm=functools.partial(nn.BatchNorm, use_running_average=not train)``.
Names are resolved here, and only here:

.. math::

   \texttt{"batch"}:\ \gamma \frac{z - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta
   \ \text{(statistics over the batch; running averages when not training)}, \qquad
   \texttt{"layer"}:\ \gamma \frac{z - \mu_z}{\sqrt{\sigma_z^2 + \epsilon}} + \beta
   \ \text{(statistics over the features)}.
"""

import functools
from typing import Any

import flax.linen as nn

from jaxgrad.models.stack import ModuleDef

NORMS = (None, "batch", "layer")

NormLike = str | ModuleDef | None


def check_norm(norm: NormLike) -> None:
  """Raises ``ValueError`` naming ``norm`` and the valid choices (a name or a constructor)."""
  if not callable(norm) and norm not in NORMS:
    raise ValueError(f"unknown norm {norm!r}; valid choices: {NORMS} or a module constructor")


def norm_layer(norm: NormLike, *, train: bool, param_dtype: Any) -> ModuleDef | None:
  """The constructor of the normalisation ``norm`` names (``None`` for no normalisation).

  Args:
    norm: ``None``, ``"batch"``, ``"layer"`` or a module constructor (returned as is).
    train: BatchNorm uses the batch's statistics (``True``) or its running averages.
    param_dtype: dtype of the named layers' scale and offset.

  Returns:
    A constructor taking the keyword ``name``, or ``None``.

  Raises:
    ValueError: for an unknown name.
  """
  check_norm(norm)
  if norm == "batch":
    return functools.partial(nn.BatchNorm, use_running_average=not train, param_dtype=param_dtype)
  if norm == "layer":
    return functools.partial(nn.LayerNorm, param_dtype=param_dtype)
  return norm


__all__ = ["NORMS", "NormLike", "check_norm", "norm_layer"]
