"""jaxgrad: measure, explain and cure vanishing and exploding gradients in JAX."""

from jaxgrad import activations as activations
from jaxgrad import diagnostics as diagnostics
from jaxgrad import initializers as initializers
from jaxgrad import models as models
from jaxgrad import theory as theory
from jaxgrad.diagnostics.diagnose import diagnose as diagnose

__version__ = "0.1.0"

__all__ = ["activations", "diagnose", "diagnostics", "initializers", "models", "theory"]
