"""Data augmentation for word crops: a CPU augmenter (OpenCV + NumPy) and a batched GPU augmenter (torch).

:class:`Augmenter` works on ``(H, W, 3)`` uint8 RGB arrays before preprocessing, with an explicit
``numpy.random.Generator`` so that a data stream is reproducible. Operations (each applied with its own
probability, magnitudes scaled by ``strength``): one geometric warp (rotation, shear, perspective, scale,
translation), blur (Gaussian or motion), low-resolution resampling, colour (channel gains, grey, inversion,
channel shuffle), contrast/brightness/gamma, Gaussian noise and JPEG re-encoding.

:class:`GpuAugment` applies random affine warps, photometric jitter, blur and noise to a whole normalized batch
``(B, 3, H, W)`` on the training device, off the CPU's critical path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "Augmenter", "GpuAugment"]


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise ImportError("augmentation needs OpenCV: pip install 'str-distill[train]'") from None
    return cv2


@dataclass
class AugmentConfig:
    """Probabilities and magnitudes of :class:`Augmenter` at ``strength = 1``.

    Attributes:
        p_geometric: probability of one combined warp.
        max_rotation: degrees; ``p_big_rotation`` of the warps use ``big_rotation`` instead (tilted text).
        max_shear: horizontal shear as a fraction of the height.
        max_perspective: corner jitter as a fraction of the image size.
        scale: range of the isotropic scale of the warp.
        p_blur, max_blur: Gaussian or motion blur with a kernel up to ``max_blur`` pixels (at height 32).
        p_lowres: down- then up-sampling by a factor up to ``max_lowres`` (never together with blur).
        p_color, p_gray, p_invert: channel gains, grey conversion, inversion.
        p_contrast: contrast, brightness and gamma changes.
        p_noise, max_noise: additive Gaussian noise with sigma up to ``max_noise`` (0-255 scale).
        p_jpeg, min_jpeg_quality: JPEG re-encoding with quality in ``[min_jpeg_quality, 95]``.
        work_height: images taller than twice this are first shrunk to this height (aspect kept): augmenting an
            800-pixel crop that ends up 32 pixels high wastes time.
    """

    p_geometric: float = 0.6
    max_rotation: float = 8.0
    p_big_rotation: float = 0.1
    big_rotation: float = 30.0
    max_shear: float = 0.35
    max_perspective: float = 0.08
    scale: tuple[float, float] = (0.85, 1.05)
    p_blur: float = 0.2
    max_blur: int = 5
    p_lowres: float = 0.1
    max_lowres: float = 3.0
    p_color: float = 0.3
    p_gray: float = 0.1
    p_invert: float = 0.1
    p_contrast: float = 0.5
    p_noise: float = 0.2
    max_noise: float = 14.0
    p_jpeg: float = 0.2
    min_jpeg_quality: int = 20
    work_height: int = 64


class Augmenter:
    """Strong CPU augmentation for real crops.

    Args:
        config: probabilities and magnitudes.
        strength: multiplies every probability (capped at 1) and magnitude; 0 disables all operations.

    Call with ``(image (H, W, 3) uint8 RGB, rng)``; returns a new uint8 RGB array (its size may differ).
    """

    def __init__(self, config: AugmentConfig | None = None, strength: float = 1.0) -> None:
        if strength < 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        self.config = config or AugmentConfig()
        self.strength = float(strength)

    def _p(self, p: float) -> float:
        return min(p * self.strength, 1.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.strength == 0:
            return img
        cv2 = _cv2()
        c = self.config
        h, w = img.shape[:2]
        if h > 2 * c.work_height:
            nw = max(1, round(w * c.work_height / h))
            img = cv2.resize(img, (nw, c.work_height), interpolation=cv2.INTER_AREA)
        img = np.ascontiguousarray(img)
        if rng.random() < self._p(c.p_geometric):
            img = self.warp(img, rng)
        r = rng.random()  # blur and low resolution never stack: together they erase small text
        if r < self._p(c.p_blur):
            img = self.blur(img, rng)
        elif r < self._p(c.p_blur) + self._p(c.p_lowres):
            img = self.lowres(img, rng)
        img = self.photometric(img, rng)
        if rng.random() < self._p(c.p_noise):
            sigma = rng.uniform(2.0, c.max_noise * self.strength)
            img = np.clip(img.astype(np.float32) + rng.normal(0.0, sigma, img.shape), 0, 255).astype(np.uint8)
        if rng.random() < self._p(c.p_jpeg):
            img = self.jpeg(img, rng)
        return img

    # -------------------------------------------------------------------------------------------- operations
    def warp(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One perspective warp combining rotation, shear, scale, translation and corner jitter (same size out)."""
        cv2 = _cv2()
        c, s = self.config, self.strength
        h, w = img.shape[:2]
        big = rng.random() < c.p_big_rotation
        angle = math.radians(rng.uniform(-1, 1) * (c.big_rotation if big else c.max_rotation) * s)
        shear = rng.uniform(-1, 1) * c.max_shear * s
        lo, hi = c.scale
        scale = rng.uniform(1 - (1 - lo) * min(s, 1.0), 1 + (hi - 1) * min(s, 1.0))
        # Rotation of a wide crop: shrink so that the rotated text stays inside the frame.
        fit = min(1.0, 1.0 / (abs(math.cos(angle)) + abs(math.sin(angle)) * w / max(h, 1) * 0.5 + 1e-6))
        fit = max(fit, 0.6) if big else 1.0
        cx, cy = w / 2.0, h / 2.0
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        pts = src - [cx, cy]
        pts[:, 0] += shear * pts[:, 1]
        ca, sa = math.cos(angle), math.sin(angle)
        pts = pts @ np.float32([[ca, sa], [-sa, ca]]) * (scale * fit)
        jitter = rng.uniform(-1, 1, (4, 2)) * c.max_perspective * s * np.float32([w, h])
        shift = rng.uniform(-1, 1, 2) * 0.04 * s * np.float32([w, h])
        dst = (pts + [cx, cy] + jitter + shift).astype(np.float32)
        m = cv2.getPerspectiveTransform(src, dst)
        return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def blur(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cv2 = _cv2()
        h = img.shape[0]
        k = max(3, int(round(rng.uniform(1, self.config.max_blur * min(self.strength, 1.5)) * h / 32)))
        k += (k + 1) % 2  # odd
        if rng.random() < 0.5:
            return cv2.GaussianBlur(img, (k, k), 0)
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        kernel /= max(kernel.sum(), 1e-6)
        return cv2.filter2D(img, -1, kernel)

    def lowres(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cv2 = _cv2()
        h, w = img.shape[:2]
        f = rng.uniform(1.5, max(1.5, self.config.max_lowres * min(self.strength, 1.5)))
        small = cv2.resize(img, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
        interp = cv2.INTER_NEAREST if rng.random() < 0.3 else cv2.INTER_LINEAR
        return cv2.resize(small, (w, h), interpolation=interp)

    def photometric(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c, s = self.config, self.strength
        x = None
        if rng.random() < self._p(c.p_color):
            x = img.astype(np.float32) * rng.uniform(1 - 0.3 * s, 1 + 0.3 * s, 3).astype(np.float32)
            if rng.random() < 0.3:
                x = x[:, :, rng.permutation(3)]
        if rng.random() < self._p(c.p_contrast):
            x = img.astype(np.float32) if x is None else x
            mean = float(x.mean())
            alpha = rng.uniform(max(0.2, 1 - 0.6 * s), 1 + 0.5 * s)
            beta = rng.uniform(-40, 40) * s
            x = (x - mean) * alpha + mean + beta
            if rng.random() < 0.5:
                gamma = math.exp(rng.uniform(-0.5, 0.5) * s)
                x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** gamma
        out = img if x is None else np.clip(x, 0, 255).astype(np.uint8)
        if rng.random() < self._p(c.p_gray):
            g = (out.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])).astype(np.uint8)
            out = np.repeat(g[:, :, None], 3, axis=2)
        if rng.random() < self._p(c.p_invert):
            out = 255 - out
        return out

    def jpeg(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cv2 = _cv2()
        q = int(rng.integers(max(5, int(95 - (95 - self.config.min_jpeg_quality) * min(self.strength, 1.0))), 96))
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            return img
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img if dec is None else np.ascontiguousarray(dec[:, :, ::-1])


class GpuAugment:
    """Batched augmentation on the training device, for normalized images ``(B, 3, H, W)``.

    Each sample independently gets, with probability ``p`` each: an affine warp (rotation up to ``rotation``
    degrees, shear, scale, translation; border replicated), contrast/brightness jitter, a 3x3 or 5x5 blur, and
    Gaussian noise. Randomness comes from a ``torch.Generator`` seeded per step, so runs are reproducible.

    Args:
        p: probability of each operation per sample.
        strength: magnitude multiplier.
        seed: base seed.
    """

    def __init__(self, p: float = 0.5, strength: float = 1.0, rotation: float = 10.0, seed: int = 0) -> None:
        self.p = p
        self.strength = strength
        self.rotation = rotation
        self.seed = seed

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, step: int) -> torch.Tensor:
        """``(B, 3, H, W)`` -> augmented ``(B, 3, H, W)`` (same dtype and device)."""
        b, _, h, w = images.shape
        dev = images.device
        g = torch.Generator(device=dev).manual_seed(self.seed * 1_000_003 + step)

        def u(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=g, device=dev) * 2 - 1

        def coin() -> torch.Tensor:
            return (torch.rand(b, generator=g, device=dev) < self.p).float()

        x = images.float()
        s = self.strength
        # Affine warp: rotation in pixel space (aspect-aware), shear, scale, shift.
        on = coin()
        ang = u(b) * math.radians(self.rotation) * s * on
        shear = u(b) * 0.3 * s * on
        scale = 1 + u(b) * 0.08 * s * on
        tx, ty = u(b) * 0.04 * s * on, u(b) * 0.08 * s * on
        ar = w / h
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0] = cos / scale
        theta[:, 0, 1] = (-sin / ar + shear) / scale
        theta[:, 1, 0] = sin * ar / scale
        theta[:, 1, 1] = cos / scale
        theta[:, 0, 2], theta[:, 1, 2] = tx, ty
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # Contrast / brightness.
        on = coin()[:, None, None, None]
        mean = x.mean((1, 2, 3), keepdim=True)
        alpha = 1 + u(b)[:, None, None, None] * 0.4 * s
        beta = u(b)[:, None, None, None] * 0.3 * s
        x = torch.where(on > 0, (x - mean) * alpha + mean + beta, x)
        # Blur: a per-sample mix with a 5x5 box-ish Gaussian.
        on = coin()[:, None, None, None]
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=dev)
        k2 = (k[:, None] * k[None, :]) / 256.0
        blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k2.expand(3, 1, 5, 5), groups=3)
        amount = torch.rand(b, 1, 1, 1, generator=g, device=dev) * on
        x = x + (blurred - x) * amount
        # Noise.
        on = coin()[:, None, None, None]
        sigma = torch.rand(b, 1, 1, 1, generator=g, device=dev) * 0.12 * s * on
        x = x + torch.randn(x.shape, generator=g, device=dev) * sigma
        return x.to(images.dtype)
