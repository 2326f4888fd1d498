"""Flax linen models. Scanned layer stacks (:class:`Stack`) are submodules named ``layers``."""

from jaxgrad.models.layers import delta_orthogonal as delta_orthogonal
from jaxgrad.models.layers import DepthwiseSeparableConv as DepthwiseSeparableConv
from jaxgrad.models.layers import DilatedConvBlock as DilatedConvBlock
from jaxgrad.models.layers import receptive_field as receptive_field
from jaxgrad.models.layers import ReversibleCoupling as ReversibleCoupling
from jaxgrad.models.mlp import DeepMLP as DeepMLP
from jaxgrad.models.mlp import DenseBlock as DenseBlock
from jaxgrad.models.mlp import DenseStack as DenseStack
from jaxgrad.models.norms import check_norm as check_norm
from jaxgrad.models.norms import norm_layer as norm_layer
from jaxgrad.models.norms import NormLike as NormLike
from jaxgrad.models.norms import NORMS as NORMS
from jaxgrad.models.recurrent import CELLS as CELLS
from jaxgrad.models.recurrent import RECURRENT_INITS as RECURRENT_INITS
from jaxgrad.models.recurrent import RecurrentNet as RecurrentNet
from jaxgrad.models.residual import ResidualBlock as ResidualBlock
from jaxgrad.models.residual import ResidualBranch as ResidualBranch
from jaxgrad.models.residual import ResidualMLP as ResidualMLP
from jaxgrad.models.resnet import BasicBlock as BasicBlock
from jaxgrad.models.resnet import num_layers as num_layers
from jaxgrad.models.resnet import PlainNet as PlainNet
from jaxgrad.models.resnet import ResNet as ResNet
from jaxgrad.models.resnet import RESNET18 as RESNET18
from jaxgrad.models.resnet import RESNET34 as RESNET34
from jaxgrad.models.resnet import ResNetStage as ResNetStage
from jaxgrad.models.stack import ModuleDef as ModuleDef
from jaxgrad.models.stack import scan_layers as scan_layers
from jaxgrad.models.stack import Stack as Stack
from jaxgrad.models.stack import STACK_NAME as STACK_NAME
from jaxgrad.models.transformer import MultiHeadSelfAttention as MultiHeadSelfAttention
from jaxgrad.models.transformer import NORM_POSITIONS as NORM_POSITIONS
from jaxgrad.models.transformer import Transformer as Transformer
from jaxgrad.models.transformer import TransformerBlock as TransformerBlock
from jaxgrad.models.transformer import TransformerStack as TransformerStack
from jaxgrad.models.weight_norm import from_weight_norm as from_weight_norm
from jaxgrad.models.weight_norm import to_weight_norm as to_weight_norm
from jaxgrad.models.weight_norm import weight_norm as weight_norm
from jaxgrad.models.weight_norm import WeightNormDense as WeightNormDense

__all__ = [
    "BasicBlock",
    "CELLS",
    "DeepMLP",
    "DenseBlock",
    "DenseStack",
    "DepthwiseSeparableConv",
    "DilatedConvBlock",
    "ModuleDef",
    "MultiHeadSelfAttention",
    "NORMS",
    "NORM_POSITIONS",
    "NormLike",
    "PlainNet",
    "RECURRENT_INITS",
    "RESNET18",
    "RESNET34",
    "RecurrentNet",
    "ResNet",
    "ResNetStage",
    "ResidualBlock",
    "ResidualBranch",
    "ResidualMLP",
    "ReversibleCoupling",
    "STACK_NAME",
    "Stack",
    "Transformer",
    "TransformerBlock",
    "TransformerStack",
    "WeightNormDense",
    "check_norm",
    "delta_orthogonal",
    "from_weight_norm",
    "norm_layer",
    "num_layers",
    "receptive_field",
    "scan_layers",
    "to_weight_norm",
    "weight_norm",
]
