"""python -m jaxgrad.doctor: verdicts on named configs, JSON output, clear CLI errors."""

import json

import pytest

from jaxgrad import doctor

SMALL = ["--width", "8", "--batch", "16"]


def test_sigmoid_with_small_init_is_vanishing(capsys):
  report = doctor.main(["--model", "mlp", "--depth", "8", "--activation", "sigmoid",
                        "--init", "normal_small", *SMALL])
  text = capsys.readouterr().out
  assert report["verdict"] == "vanishing" and "verdict: vanishing" in text
  assert "1. initialise for the activation" in text


def test_json_output_and_mean_field_chi1(capsys):
  doctor.main(["--depth", "6", "--activation", "relu", "--init", "gaussian:sigma_w2=32",
               "--json", *SMALL])
  report = json.loads(capsys.readouterr().out)
  assert report["verdict"] == "exploding"
  assert report["model"]["chi1"] == pytest.approx(16.0, rel=1e-4)  # relu: chi_1 = sigma_w^2 / 2
  assert report["layers"][0]["evidence"]["signal_ratio_to_output"] > 1e2


def test_parse_init():
  assert doctor.parse_init("constant:value=-3") == ("constant", {"value": -3.0})
  assert doctor.parse_init("he_normal") == ("he_normal", {})


@pytest.mark.parametrize("argv, message", [
    (["--activation", "softmax"], "unknown activation 'softmax'; valid names"),
    (["--init", "glorot"], "unknown initializer 'glorot'; valid names"),
    (["--init", "gaussian:sigma_w2=abc"], "bad initializer argument 'sigma_w2=abc'"),
    (["--depth", "1"], "--depth must be >= 2, got 1"),
    (["--model", "cnn"], "invalid choice: 'cnn'"),
])
def test_bad_input_is_a_clear_error(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    doctor.main(argv + SMALL)
  assert e.value.code == 2
  assert message in capsys.readouterr().err
