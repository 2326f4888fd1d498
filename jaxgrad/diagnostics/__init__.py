"""Pure, jit-able measurements of gradients and Jacobians."""

from jaxgrad.diagnostics.gradients import backprop_signal as backprop_signal
from jaxgrad.diagnostics.gradients import layer_grad_norms as layer_grad_norms
from jaxgrad.diagnostics.gradients import perturbation_grads as perturbation_grads
from jaxgrad.diagnostics.jacobian import jacobian as jacobian
from jaxgrad.diagnostics.jacobian import singular_values as singular_values
from jaxgrad.diagnostics.jacobian import spectrum_stats as spectrum_stats

__all__ = [
    "backprop_signal",
    "jacobian",
    "layer_grad_norms",
    "perturbation_grads",
    "singular_values",
    "spectrum_stats",
]

from jaxgrad.diagnostics.gradient_check import gradient_check as gradient_check  # noqa: E402
__all__ += ["gradient_check"]

from jaxgrad.diagnostics.spectra import log_singular_values as log_singular_values  # noqa: E402
__all__ += ["log_singular_values"]

from jaxgrad.diagnostics.diagnose import diagnose as diagnose  # noqa: E402
from jaxgrad.diagnostics.diagnose import format_report as format_report  # noqa: E402
__all__ += ["diagnose", "format_report"]
