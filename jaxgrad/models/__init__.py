"""Flax linen models. Scanned layer stacks are submodules named ``layers``."""

from jaxgrad.models.mlp import DeepMLP as DeepMLP
from jaxgrad.models.mlp import DenseBlock as DenseBlock
from jaxgrad.models.mlp import DenseStack as DenseStack
from jaxgrad.models.mlp import NORMS as NORMS
from jaxgrad.models.mlp import STACK_NAME as STACK_NAME

__all__ = ["DeepMLP", "DenseBlock", "DenseStack", "NORMS", "STACK_NAME"]
