"""A small Vision Transformer built from Keras layers: the shipped demo ViT and the test models.

:func:`vit` builds a functional ViT (Dosovitskiy et al., ICLR 2021) in the keras.io style: patch
embedding by a strided ``Conv2D``, optional prefix tokens (a class token and any number of extra
learned tokens, like DeiT's distillation token or DINOv2's registers), learned position embeddings,
pre-norm transformer blocks whose ``MultiHeadAttention`` layers are ordinary graph nodes, and a
head on the class token or on the mean of the patch tokens.

The two small layers it needs (:class:`PrefixTokens`, :class:`PositionEmbedding`) are registered
with Keras under the ``xai`` package, so a saved model loads after ``import xai.vit`` (which
:func:`xai.models_io.load_model` does).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers as L
from keras import ops


@keras.saving.register_keras_serializable(package="xai")
class PrefixTokens(keras.layers.Layer):
    """Prepends ``count`` learned tokens (class token first) to a ``(B, T, C)`` sequence."""

    def __init__(self, count: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.count = int(count)

    def build(self, input_shape: tuple[Any, ...]) -> None:
        self.tokens = self.add_weight(
            shape=(1, self.count, int(input_shape[-1])), initializer="zeros", name="tokens"
        )

    def call(self, x: Any) -> Any:
        batch = ops.shape(x)[0]
        prefix = ops.broadcast_to(ops.cast(self.tokens, x.dtype), (batch, self.count, x.shape[-1]))
        return ops.concatenate([prefix, x], axis=1)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        t = input_shape[1]
        return (input_shape[0], None if t is None else t + self.count, input_shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "count": self.count}


@keras.saving.register_keras_serializable(package="xai")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned ``(T, C)`` position embedding to a ``(B, T, C)`` sequence."""

    def build(self, input_shape: tuple[Any, ...]) -> None:
        self.embedding = self.add_weight(
            shape=(int(input_shape[1]), int(input_shape[2])),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="embedding",
        )

    def call(self, x: Any) -> Any:
        return x + ops.cast(self.embedding, x.dtype)[None]


def vit(
    image_size: int | tuple[int, int] = 32,
    num_classes: int = 4,
    *,
    patch_size: int | tuple[int, int] = 8,
    hidden_dim: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    mlp_dim: int = 64,
    num_prefix: int = 1,
    pooling: str = "token",
    stem: str = "patch",
    channels: int = 3,
    rescale: float | None = None,
    activation: str | None = "softmax",
    seed: int | None = None,
    name: str = "vit",
) -> keras.Model:
    """A functional Vision Transformer.

    Args:
        image_size: input height and width (an int for square images).
        num_classes: size of the output.
        patch_size: patch height and width; the image size must be a multiple.
        hidden_dim: token width.
        num_layers: number of transformer blocks (named ``block{i}_...``).
        num_heads: attention heads per block (``hidden_dim`` is split between them).
        mlp_dim: hidden width of each block's MLP.
        num_prefix: learned tokens before the patch tokens: 0 (none, keras.io style), 1 (a class
            token), 2 (DeiT's class and distillation tokens), 1 + registers (DINOv2).
        pooling: ``"token"`` (the head reads the class token; needs ``num_prefix >= 1``) or
            ``"mean"`` (the mean of the patch tokens).
        stem: ``"patch"`` (one ``Conv2D`` with kernel and stride = patch size), ``"hybrid"``
            (patches of a small CNN's feature map, as ViT-Hybrid), or ``"conv"`` (a
            stack of stride-2 3x3 convolutions reaching the patch size, Xiao et al., "Early
            Convolutions Help Transformers See Better", NeurIPS 2021; square power-of-2 patches).
        channels: input channels.
        rescale: a factor applied by a first ``Rescaling`` layer (e.g. 1/255), or None.
        activation: the head's activation (``"softmax"``, ``"sigmoid"``, None for logits).
        seed: seeds the initialisers (``keras.utils.set_random_seed``) when given.
        name: the model's name.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    if h % ph or w % pw:
        raise ValueError(f"image size {(h, w)} is not a multiple of the patch size {(ph, pw)}")
    if pooling not in ("token", "mean"):
        raise ValueError(f"pooling must be 'token' or 'mean', not {pooling!r}")
    if pooling == "token" and num_prefix < 1:
        raise ValueError("pooling='token' needs a class token (num_prefix >= 1)")
    inputs = keras.Input((h, w, channels), name="image")
    x = L.Rescaling(rescale, name="rescale")(inputs) if rescale is not None else inputs
    if stem == "conv":
        if ph != pw or ph & (ph - 1) or ph < 2:
            raise ValueError(f"stem='conv' needs a square power-of-2 patch size, not {(ph, pw)}")
        n_convs = ph.bit_length() - 1
        for i in range(n_convs - 1):
            width = max(8, hidden_dim >> (n_convs - 1 - i))
            x = L.Conv2D(width, 3, strides=2, padding="same", name=f"stem_conv{i}")(x)
            x = L.ReLU(name=f"stem_relu{i}")(x)
        x = L.Conv2D(hidden_dim, 3, strides=2, padding="same", name="patch_embedding")(x)
    elif stem == "hybrid":
        # ViT-Hybrid (Dosovitskiy et al., sec. 3.1): patches of a CNN feature map. Conv-BN-ReLU
        # blocks at full resolution, then one max-pool per halving down to the patch size.
        if ph != pw or ph & (ph - 1) or ph < 2:
            raise ValueError(f"stem='hybrid' needs a square power-of-2 patch size, not {(ph, pw)}")
        width = max(8, hidden_dim // 4)
        for i in range(ph.bit_length()):
            for j in range(2 if i == 0 else 1):
                x = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"stem{i}_conv{j}")(x)
                x = L.BatchNormalization(name=f"stem{i}_bn{j}")(x)
                x = L.ReLU(name=f"stem{i}_relu{j}")(x)
            if i < ph.bit_length() - 1:
                x = L.MaxPooling2D(2, name=f"stem{i}_pool")(x)
                width = min(hidden_dim, width * 2)
        x = L.Conv2D(hidden_dim, 1, name="patch_embedding")(x)
    elif stem == "patch":
        x = L.Conv2D(hidden_dim, (ph, pw), strides=(ph, pw), name="patch_embedding")(x)
    else:
        raise ValueError(f"stem must be 'patch' or 'conv', not {stem!r}")
    x = L.Reshape(((h // ph) * (w // pw), hidden_dim), name="patch_tokens")(x)
    if num_prefix:
        x = PrefixTokens(num_prefix, name="prefix_tokens")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for i in range(num_layers):
        y = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(x)
        y = L.MultiHeadAttention(num_heads, hidden_dim // num_heads, name=f"block{i}_attention")(
            y, y
        )
        x = L.Add(name=f"block{i}_add1")([x, y])
        y = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(x)
        y = L.Dense(mlp_dim, activation="gelu", name=f"block{i}_mlp1")(y)
        y = L.Dense(hidden_dim, name=f"block{i}_mlp2")(y)
        x = L.Add(name=f"block{i}_add2")([x, y])
    x = L.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    if pooling == "token":
        x = x[:, 0]  # the class token (a Keras operation node)
    else:
        x = L.GlobalAveragePooling1D(name="token_mean")(x[:, num_prefix:])
    outputs = L.Dense(num_classes, activation=activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def shapes_vit(
    image_size: int = 64, num_classes: int = 4, *, name: str = "shapes_vit"
) -> keras.Model:
    """The architecture of the shipped demo ViT (``xai/assets/shapes_vit.keras``), untrained.

    ``Input`` (RGB floats in 0-255) -> ``Rescaling(1/255)`` -> a ViT-Hybrid stem (Conv-BN-ReLU
    blocks and three max-pools to an 8x8 grid of patches, then a 1x1 patch embedding; a linear
    patch embedding does not learn these shapes from 12,000 images) -> class token ->
    3 pre-norm blocks (width 64, 4 heads, MLP 128) -> final norm -> class token ->
    ``Dense(softmax)`` named ``predictions``. ``datasets/train_demo_models.py --models vit``
    trains it.
    """
    return vit(
        image_size,
        num_classes,
        patch_size=8,
        hidden_dim=64,
        num_layers=3,
        num_heads=4,
        mlp_dim=128,
        num_prefix=1,
        stem="hybrid",
        rescale=1.0 / 255.0,
        name=name,
    )
