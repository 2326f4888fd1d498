"""diagnose(): each pathology built on purpose gets its verdict; evidence equals direct numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrad import monitoring
from jaxgrad.diagnostics import backprop_signal, diagnose, format_report, layer_grad_norms
from jaxgrad.models import DeepMLP
from tests import _tol

X = jax.random.normal(jax.random.key(0), (32, 16))
Y = jnp.arange(32) % 4
LOSS = lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()  # noqa: E731


def _report(activation, kernel_init="he_normal", bias_init="zeros", depth=8):
  model = DeepMLP(depth=depth, width=16, out_features=4, activation=activation,
                  kernel_init=kernel_init, bias_init=bias_init)
  variables = jax.jit(model.init)(jax.random.key(1), X)
  outputs = jax.jit(lambda v: monitoring.mlp_outputs(model, v, X))(variables)
  return model, variables, diagnose(model.apply, variables, (X, Y), LOSS, outputs=outputs,
                                    activation=activation)


PATHOLOGIES = {
    # name: (activation, kernel init, bias init, verdict of the first layer)
    "healthy": ("relu", "he_normal", "zeros", "healthy"),
    "vanishing": ("sigmoid", "normal_small", "zeros", "vanishing"),
    "exploding": ("relu", ("gaussian", {"sigma_w2": 32.0}), "zeros", "exploding"),
    "saturated": ("tanh", ("gaussian", {"sigma_w2": 50.0}), "zeros", "saturated"),
    "dead": ("relu", "he_normal", ("constant", {"value": -3.0}), "dead"),
}


@pytest.mark.parametrize("name", list(PATHOLOGIES))
def test_each_pathology_gets_its_verdict(name):
  activation, kernel_init, bias_init, first = PATHOLOGIES[name]
  _, _, report = _report(activation, kernel_init, bias_init)
  assert report["verdict"] == name, format_report(report)
  verdicts = [layer["verdict"] for layer in report["layers"]]
  assert verdicts[1] == first and verdicts[-1] == "healthy", verdicts  # output layer: reference
  if name == "healthy":
    assert report["remedies"] == []
  else:
    assert report["remedies"] and "§8" in report["remedies"][0]


def test_evidence_equals_direct_computation():
  model, variables, report = _report("tanh", "xavier_normal")
  loss = lambda v: LOSS(model.apply(v, X), Y)  # noqa: E731
  signal = list(backprop_signal(loss, variables).values())
  norms = layer_grad_norms(jax.grad(lambda p: loss({**variables, "params": p}))(variables["params"]))
  got = [layer["evidence"] for layer in report["layers"]]
  assert [layer["layer"] for layer in report["layers"]] == list(norms)
  np.testing.assert_allclose([e["signal"] for e in got], signal, **_tol.F32_REDUCED)
  np.testing.assert_allclose([e["grad_norm"] for e in got], list(norms.values()), **_tol.F32_REDUCED)
  np.testing.assert_allclose([e["signal_ratio_to_output"] for e in got],
                             np.asarray(signal) / signal[-1], **_tol.F32_REDUCED)
  assert report["signal"] == "backprop"


def test_orthogonal_linear_hidden_layers_pass_the_signal_unchanged():
  """Square orthogonal W: ||W^T d|| = ||d|| per example, so hidden signals are equal."""
  _, _, report = _report("linear", ("orthogonal", {"gain": 1.0}))
  hidden = [l["evidence"]["signal"] for l in report["layers"][:-1]]
  np.testing.assert_allclose(hidden, hidden[-1], **_tol.F32_REDUCED)


def test_without_perturbations_weight_gradients_stand_in():
  model, variables, _ = _report("relu", depth=4)
  params_only = {"params": variables["params"]}
  report = diagnose(model.apply, params_only, (X, Y), LOSS)
  assert report["signal"] == "weight_grad"
  assert "dead_fraction" not in report["layers"][0]["evidence"]
  assert "verdict:" in format_report(report)
