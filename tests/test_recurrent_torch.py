"""RecurrentNet against PyTorch's own nn.LSTM / nn.GRU on identical weights (needs the ``torch`` extra).

The weights are drawn by PyTorch (its default init) and copied into
RecurrentNet's tree: the input kernels ``W_i*`` transposed, the recurrent
kernels ``W_h*`` transposed, PyTorch's two biases ``b_i* + b_h*`` summed into
Flax's one where the two sums meet (the GRU keeps ``b_in`` and ``b_hn`` apart,
as both frameworks do). Outputs and every parameter's gradient must agree in
float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad.models.recurrent import RecurrentNet

torch = pytest.importorskip("torch")

B, T, FEATURES, H, LAYERS = 3, 9, 2, 5, 2
GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


def _torch_net(cell: str):
  torch.manual_seed(0)
  rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(
      FEATURES, H, num_layers=LAYERS, batch_first=True).double()
  head = torch.nn.Linear(H, 1).double()
  return rnn, head


def _chunks(tensor) -> list[np.ndarray]:
  return np.split(tensor.detach().numpy(), len(tensor) // H)


def _to_flax(cell: str, rnn, head, grads: bool = False) -> dict:
  """The torch parameters (or, with ``grads``, their gradients) in RecurrentNet's params tree."""
  get = (lambda p: p.grad) if grads else (lambda p: p)
  tree = {"head": {"kernel": get(head.weight).detach().numpy().T,
                   "bias": get(head.bias).detach().numpy()}}
  for layer in range(LAYERS):
    w_i, w_h, b_i, b_h = (_chunks(get(getattr(rnn, f"{name}_l{layer}")))
                          for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    gates = {}
    for g, gate in enumerate(GATES[cell]):
      gates[f"i{gate}"] = {"kernel": w_i[g].T}
      gates[f"h{gate}"] = {"kernel": w_h[g].T}
      if cell == "lstm":  # one bias per gate in Flax, on the recurrent Dense
        gates[f"h{gate}"]["bias"] = b_h[g] if grads else b_i[g] + b_h[g]
      elif gate == "n":  # GRU: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        gates["in"]["bias"], gates["hn"]["bias"] = b_i[g], b_h[g]
      else:
        gates[f"i{gate}"]["bias"] = b_i[g] if grads else b_i[g] + b_h[g]
    tree[f"rnn_{layer}"] = {"cell": {"cell": gates}}
  return tree


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_pytorch_weights_give_pytorchs_outputs_and_gradients(x64, cell):
  rnn, head = _torch_net(cell)
  x = np.random.default_rng(0).uniform(size=(B, T, FEATURES))
  out, _ = rnn(torch.from_numpy(x))
  y_torch = head(out[:, -1])
  torch.sum(y_torch**2).backward()

  model = RecurrentNet(cell=cell, hidden=H, layers=LAYERS, param_dtype=jnp.float64)
  reference = model.init(jax.random.key(0), jnp.asarray(x))["params"]
  params = jax.tree.map(jnp.asarray, _to_flax(cell, rnn, head))
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, reference)
  y, vjp = jax.vjp(lambda p: model.apply({"params": p}, jnp.asarray(x)), params)
  np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-12, atol=1e-14)
  (grads,) = vjp(2 * y)
  expected = _to_flax(cell, rnn, head, grads=True)
  jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-13),
               grads, expected)
