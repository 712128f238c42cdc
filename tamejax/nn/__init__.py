"""Binarized neural networks in Flax: quantizers, binary layers, Bop and bit-packed inference.

* Quantizers (``tamejax.nn.quantizers``): ``sign(x) = argmax_{s in {-1, 1}} s x`` is the smallest
  MIP there is; each quantizer is an estimator of its derivative (straight-through, Bi-Real,
  Swish, Gaussian and Gumbel perturbations, XNOR-Net's magnitude-aware sign). ``sign(0) = +1``.
* Layers (``tamejax.nn.layers``): ``BinaryDense`` and ``BinaryConv`` (Linen), ``NNXBinaryLinear``
  and ``NNXBinaryConv`` (NNX), equal to Flax's ``Dense``/``Conv`` when no quantizer is set.
* Optimizers (``tamejax.nn.bop``): Bop (``tamejax.nn.bop.bop``, Helwegen et al. 2019), latent-weight clipping and a
  ``multi_transform`` split between binary kernels and the rest.
* Bit packing (``tamejax.nn.bitpack``): ``pack``/``unpack`` (bit 1 = -1, LSB first) and exact
  XNOR-popcount ``xnor_matmul``/``xnor_conv2d`` compiled by XLA.
* Packed inference (``tamejax.nn.packed``): export of trained binary layers to layers that hold
  one bit per weight, with batch-norm folded into per-channel integer thresholds; a Pallas
  kernel for GPU/TPU (``tamejax.nn.pallas``).
* MIP layers (``tamejax.nn.mip_layer``): ``MIPLayer`` (Linen) and ``NNXMIPLayer`` (NNX), a MIP whose
  cost / constraints come from inputs and learnable parameters, returning its optimal value (conservative
  gradient in every field) or a differentiable solution (an estimator of ``tamejax.estimators``).
"""

from tamejax.nn import bitpack, bop, layers, mip_layer, packed, pallas, quantizers
from tamejax.nn.bitpack import pack, unpack, word_bits, xnor_conv2d, xnor_matmul
from tamejax.nn.bop import (
    BopState,
    binary_kernel_paths,
    binary_labels,
    binary_optimizer,
    clip_latent_weights,
    pm1_init,
)
from tamejax.nn.layers import BinaryConv, BinaryDense, NNXBinaryConv, NNXBinaryLinear, binary_conv, binary_dense
from tamejax.nn.mip_layer import MIPLayer, NNXMIPLayer
from tamejax.nn.packed import (
    NNXPackedConv,
    NNXPackedLinear,
    PackedConv,
    PackedDense,
    PackedLayer,
    PackedWeight,
    export_conv,
    export_dense,
    export_layer,
    export_linen_mlp,
    fold_threshold,
    run_packed,
    threshold_pack,
)
from tamejax.nn.pallas import xnor_matmul_pallas
from tamejax.nn.quantizers import (
    QUANTIZERS,
    approx_sign,
    gaussian_sign,
    get_quantizer,
    gumbel_sign,
    is_stochastic,
    magnitude_aware_sign,
    sign,
    ste_heaviside,
    ste_sign,
    swish_sign,
)

__all__ = [
    "MIPLayer",
    "NNXMIPLayer",
    "mip_layer",
    "BinaryConv",
    "BinaryDense",
    "BopState",
    "NNXBinaryConv",
    "NNXBinaryLinear",
    "NNXPackedConv",
    "NNXPackedLinear",
    "PackedConv",
    "PackedDense",
    "PackedLayer",
    "PackedWeight",
    "QUANTIZERS",
    "approx_sign",
    "binary_conv",
    "binary_dense",
    "binary_kernel_paths",
    "binary_labels",
    "binary_optimizer",
    "bitpack",
    "bop",
    "clip_latent_weights",
    "export_conv",
    "export_dense",
    "export_layer",
    "export_linen_mlp",
    "fold_threshold",
    "gaussian_sign",
    "get_quantizer",
    "gumbel_sign",
    "is_stochastic",
    "layers",
    "magnitude_aware_sign",
    "pack",
    "packed",
    "pallas",
    "pm1_init",
    "quantizers",
    "run_packed",
    "sign",
    "ste_heaviside",
    "ste_sign",
    "swish_sign",
    "threshold_pack",
    "unpack",
    "word_bits",
    "xnor_conv2d",
    "xnor_matmul",
    "xnor_matmul_pallas",
]
