"""Flax linen models. Scanned layer stacks are submodules named ``layers``."""

from jaxgrad.models.layers import DepthwiseSeparableConv as DepthwiseSeparableConv
from jaxgrad.models.layers import DilatedConvBlock as DilatedConvBlock
from jaxgrad.models.layers import ReversibleCoupling as ReversibleCoupling
from jaxgrad.models.layers import delta_orthogonal as delta_orthogonal
from jaxgrad.models.mlp import DeepMLP as DeepMLP
from jaxgrad.models.mlp import DenseBlock as DenseBlock
from jaxgrad.models.mlp import DenseStack as DenseStack
from jaxgrad.models.mlp import NORMS as NORMS
from jaxgrad.models.mlp import STACK_NAME as STACK_NAME
from jaxgrad.models.recurrent import CELLS as CELLS
from jaxgrad.models.recurrent import RECURRENT_INITS as RECURRENT_INITS
from jaxgrad.models.recurrent import RecurrentNet as RecurrentNet
from jaxgrad.models.residual import ResidualBlock as ResidualBlock
from jaxgrad.models.residual import ResidualMLP as ResidualMLP
from jaxgrad.models.resnet import PlainNet as PlainNet
from jaxgrad.models.resnet import ResNet as ResNet
from jaxgrad.models.transformer import Transformer as Transformer
from jaxgrad.models.transformer import TransformerBlock as TransformerBlock
from jaxgrad.models.transformer import TransformerStack as TransformerStack
from jaxgrad.models.weight_norm import WeightNormDense as WeightNormDense

__all__ = [
    "CELLS",
    "DeepMLP",
    "DenseBlock",
    "DenseStack",
    "DepthwiseSeparableConv",
    "DilatedConvBlock",
    "NORMS",
    "PlainNet",
    "RECURRENT_INITS",
    "RecurrentNet",
    "ResNet",
    "ResidualBlock",
    "ResidualMLP",
    "ReversibleCoupling",
    "STACK_NAME",
    "Transformer",
    "TransformerBlock",
    "TransformerStack",
    "WeightNormDense",
    "delta_orthogonal",
]
