"""Pure, jit-able measurements of gradients, Jacobians and units, and the diagnosis of a model."""

from jaxgrad.diagnostics._tree import LayerValues as LayerValues
from jaxgrad.diagnostics._tree import per_layer as per_layer
from jaxgrad.diagnostics.diagnose import diagnose as diagnose
from jaxgrad.diagnostics.report import LayerReport as LayerReport
from jaxgrad.diagnostics.report import Report as Report
from jaxgrad.diagnostics.gradient_check import gradient_check as gradient_check
from jaxgrad.diagnostics.gradient_check import num_kinks as num_kinks
from jaxgrad.diagnostics.gradient_check import precision_advice as precision_advice
from jaxgrad.diagnostics.gradients import PERTURBATIONS as PERTURBATIONS
from jaxgrad.diagnostics.gradients import backprop_signal as backprop_signal
from jaxgrad.diagnostics.gradients import layer_grad_norms as layer_grad_norms
from jaxgrad.diagnostics.gradients import perturbation_grads as perturbation_grads
from jaxgrad.diagnostics.gradients import safe_norm as safe_norm
from jaxgrad.diagnostics.gradients import signal_norms as signal_norms
from jaxgrad.diagnostics.jacobian import jacobian as jacobian
from jaxgrad.diagnostics.jacobian import resolvable as resolvable
from jaxgrad.diagnostics.jacobian import singular_values as singular_values
from jaxgrad.diagnostics.jacobian import spectrum_stats as spectrum_stats
from jaxgrad.diagnostics.recurrent import time_grads as time_grads
from jaxgrad.diagnostics.spectra import log_singular_values as log_singular_values
from jaxgrad.diagnostics.units import relative_derivative as relative_derivative
from jaxgrad.diagnostics.units import unit_fractions as unit_fractions

__all__ = [
    "LayerReport",
    "LayerValues",
    "PERTURBATIONS",
    "Report",
    "backprop_signal",
    "diagnose",
    "gradient_check",
    "jacobian",
    "layer_grad_norms",
    "log_singular_values",
    "num_kinks",
    "per_layer",
    "perturbation_grads",
    "precision_advice",
    "relative_derivative",
    "resolvable",
    "safe_norm",
    "signal_norms",
    "singular_values",
    "spectrum_stats",
    "time_grads",
    "unit_fractions",
]
