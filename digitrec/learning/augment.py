"""Training-time augmentation as raw TensorFlow ops: random affine warps (and flips for clothing).

Handwriting varies in slant, size and position, so digits get rotation, shear, scale and shift;
clothing photos are upright and centred, so they get mirror flips and small shifts only.
"""

from __future__ import annotations

import dataclasses
import math

from digitrec.runtime.tf_loader import tf


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
    rotation_deg: float = 0.0
    shear: float = 0.0
    scale: float = 0.0  # +/- relative scale
    shift_px: float = 0.0
    horizontal_flip: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


DIGITS_AUGMENT = AugmentSpec(rotation_deg=10.0, shear=0.15, scale=0.1, shift_px=2.5)
FASHION_AUGMENT = AugmentSpec(scale=0.05, shift_px=2.0, horizontal_flip=True)
NO_AUGMENT = AugmentSpec()
# Fine-tuning sees each correction hundreds of times: stronger warps make each one many pictures.
STRONG_DIGITS_AUGMENT = AugmentSpec(rotation_deg=15.0, shear=0.3, scale=0.15, shift_px=3.0)
STRONG_FASHION_AUGMENT = AugmentSpec(scale=0.1, shift_px=3.0, horizontal_flip=True)


def random_affine(images: tf.Tensor, spec: AugmentSpec, seed: tf.Tensor) -> tf.Tensor:
    """Warp a batch (N, H, W, 1) with one random affine map per image, bilinear, zero fill."""
    n = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, num=6)

    def uniform(i: int, bound: float) -> tf.Tensor:
        return tf.random.stateless_uniform([n], seeds[i], minval=-bound, maxval=bound)

    theta = uniform(0, math.radians(spec.rotation_deg))
    shear = uniform(1, spec.shear)
    scale = 1.0 + uniform(2, spec.scale)
    tx, ty = uniform(3, spec.shift_px), uniform(4, spec.shift_px)
    flip = tf.ones([n])
    if spec.horizontal_flip:
        flip = tf.where(tf.random.stateless_uniform([n], seeds[5]) < 0.5, -1.0, 1.0)

    # Forward map A = R(theta) @ Shear @ diag(scale * flip, scale); the op wants output -> input,
    # so build A's inverse in closed form and apply it around the image centre.
    cos, sin = tf.cos(theta), tf.sin(theta)
    a00 = cos * scale * flip
    a01 = (cos * shear - sin) * scale
    a10 = sin * scale * flip
    a11 = (sin * shear + cos) * scale
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    c = (size - 1.0) / 2.0
    ox, oy = c + tx, c + ty  # output centre after the shift
    b0 = c - (i00 * ox + i01 * oy)
    b1 = c - (i10 * ox + i11 * oy)
    zeros = tf.zeros([n])
    transforms = tf.stack([i00, i01, b0, i10, i11, b1, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
