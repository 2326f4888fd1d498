"""Strict JSON for the tests: what a reader that follows RFC 8259 accepts."""

import json
from typing import Any


def strict_json(text: str) -> Any:
  """``json.loads`` refusing the non-standard tokens ``NaN``, ``Infinity`` and ``-Infinity``."""
  def refuse(token: str):
    raise ValueError(f"non-strict JSON token {token}")

  return json.loads(text, parse_constant=refuse)
