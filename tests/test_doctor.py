"""python -m jaxgrad.doctor: the user's model through a factory, built-in configs, JSON, errors."""

import json

import pytest

from jaxgrad import doctor, files


def make_wrong():
  """A factory that breaks the protocol."""
  return [1, 2, 3]


SMALL = ["--width", "8", "--batch", "16"]


def test_sigmoid_with_small_init_is_vanishing(capsys):
  report = doctor.main(["--model", "mlp", "--depth", "8", "--activation", "sigmoid",
                        "--init", "normal_small", *SMALL])
  text = capsys.readouterr().out
  assert report.verdict == "vanishing" and "verdict: vanishing" in text
  assert "1. initialise for the activation" in text


def test_json_output_and_mean_field_chi1(capsys):
  doctor.main(["--depth", "6", "--activation", "relu", "--init", "gaussian:sigma_w2=32",
               "--json", *SMALL])
  report = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
  assert report["verdict"] == "exploding"
  assert report["model"]["chi1"] == pytest.approx(16.0, rel=1e-4)  # relu: chi_1 = sigma_w^2 / 2
  assert report["layers"][0]["ratio"] > 1e2
  # Measured beside theory: the per-layer chi_1 from the drawn weights, near 16.
  assert report["layers"][1]["chi1"] == pytest.approx(16.0, rel=0.5)


def test_a_users_factory_gives_table_json_and_plot(tmp_path, capsys):
  plot = tmp_path / "flow.png"
  report = doctor.main(["--model", "tests.doctor_factories:vit", "--plot", str(plot), "--json"])
  d = files.loads(capsys.readouterr().out)
  assert d["model"]["class"] == "VisionTransformer" and d["verdict"] == "blocked"
  assert report.layers[0].name == "embedding" and "blocked by head" in str(report)
  assert plot.stat().st_size > 10_000


@pytest.mark.parametrize("flags, verdict", [
    (["--activation", "tanh", "--init", "gaussian:sigma_w2=50"], "saturated"),
    (["--activation", "relu", "--bias-init", "constant:value=-3"], "dead"),
    (["--activation", "relu", "--init", "he_normal"], "healthy"),
    (["--activation", "tanh", "--init", "xavier_normal"], "healthy"),
])
def test_saturated_dead_and_healthy_configs(flags, verdict, capsys):
  report = doctor.main(["--depth", "8", "--width", "32", "--batch", "64", *flags])
  capsys.readouterr()
  assert report.verdict == verdict
  if verdict != "healthy":  # every layer but the output's, whose units are not measured
    assert report.counts[verdict] == 7


def test_parse_init():
  assert doctor.parse_init("constant:value=-3") == ("constant", {"value": -3.0})
  assert doctor.parse_init("he_normal") == ("he_normal", {})


@pytest.mark.parametrize("argv, message", [
    (["--activation", "softmax"], "unknown activation 'softmax'; valid names"),
    (["--init", "glorot"], "unknown initializer 'glorot'; valid names"),
    (["--init", "gaussian:sigma_w2=abc"], "bad initializer argument 'sigma_w2=abc'"),
    (["--depth", "1"], "--depth must be >= 2, got 1"),
    (["--model", "cnn"], "--model must be one of ('mlp',) or 'pkg.module:function'"),
    (["--model", "tests.nope:f"], "cannot import 'tests.nope'"),
    (["--model", "tests.test_doctor:nope"], "has no function 'nope'"),
    (["--model", "tests.test_doctor:make_wrong"], "the factory returned list; expected a mapping"),
])
def test_bad_input_is_a_clear_error(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    doctor.main(argv + SMALL)
  assert e.value.code == 2
  assert message in capsys.readouterr().err
