"""jaxgrad: measure, explain and cure vanishing and exploding gradients in JAX.

The entry points: :func:`diagnose` (any Flax model, layer by layer, in
execution order), :func:`train` (any Optax chain, raw-gradient norms recorded
every step), :func:`make_optimizer` / :class:`OptimizerConfig` (the experiments'
chains), and for your own loop :class:`Monitor` with the in-jit measurements of
:mod:`jaxgrad.metrics`. Subpackages: :mod:`~jaxgrad.models`,
:mod:`~jaxgrad.diagnostics`, :mod:`~jaxgrad.data`, :mod:`~jaxgrad.theory`,
:mod:`~jaxgrad.sweep`, :mod:`~jaxgrad.probe`, :mod:`~jaxgrad.logs`,
:mod:`~jaxgrad.mixed_precision`, :mod:`~jaxgrad.activations`,
:mod:`~jaxgrad.initializers`. :mod:`jaxgrad.plotting` (matplotlib) and
:mod:`jaxgrad.doctor` (the command line) are imported only when asked for.
"""

from jaxgrad import activations as activations
from jaxgrad import data as data
from jaxgrad import diagnostics as diagnostics
from jaxgrad import initializers as initializers
from jaxgrad import logs as logs
from jaxgrad import metrics as metrics
from jaxgrad import mixed_precision as mixed_precision
from jaxgrad import models as models
from jaxgrad import optimizers as optimizers
from jaxgrad import probe as probe
from jaxgrad import sweep as sweep
from jaxgrad import theory as theory
from jaxgrad import training as training
from jaxgrad.diagnostics import Report as Report
from jaxgrad.diagnostics import diagnose as diagnose
from jaxgrad.logs import Monitor as Monitor
from jaxgrad.logs import write_run as write_run
from jaxgrad.metrics import grad_norms as grad_norms
from jaxgrad.metrics import recorder as recorder
from jaxgrad.metrics import update_ratios as update_ratios
from jaxgrad.optimizers import OptimizerConfig as OptimizerConfig
from jaxgrad.optimizers import make_optimizer as make_optimizer
from jaxgrad.training import StepInfo as StepInfo
from jaxgrad.training import TrainResult as TrainResult
from jaxgrad.training import train as train

__version__ = "0.1.0"

__all__ = [
    "Monitor",
    "OptimizerConfig",
    "Report",
    "StepInfo",
    "TrainResult",
    "activations",
    "data",
    "diagnose",
    "diagnostics",
    "grad_norms",
    "initializers",
    "logs",
    "make_optimizer",
    "metrics",
    "mixed_precision",
    "models",
    "optimizers",
    "probe",
    "recorder",
    "sweep",
    "theory",
    "train",
    "training",
    "update_ratios",
    "write_run",
]
