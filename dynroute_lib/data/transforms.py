"""Joint image/mask transforms, input normalisation and pad-to-32 (paper Sec. 4.1 augmentation; spec §2.1, §5.2).

* Normalisation (§2.1): ``"official_bgr"`` = BGR floats in 0..255 minus the BGR mean
  [103.530, 116.280, 123.675], std 1 (the official DynamicRouting convention);
  ``"imagenet_rgb"`` = RGB / 255 with the ImageNet mean/std.
* Training augmentation (§5.2) with ``torchvision.transforms.v2`` on ``tv_tensors.Image`` /
  ``tv_tensors.Mask`` so the image (bilinear) and the mask (nearest) always receive identical
  geometric parameters: random scale, horizontal flip p=0.5, centred padding when smaller than
  the crop (image 0 in raw pixels, mask 255), random crop.
* Evaluation: no random ops; the normalised image is padded bottom/right to a multiple of 32
  with 0 *after* normalisation, the mask with 255 (§2.1).

Deviation from §5.2: the official code draws the short edge from the discrete set
{512, ..., 2048} (scale 0.5..2.0 for 1024-pixel short edges); here the scale factor is drawn
uniformly from the continuous ``scale_range`` so that it applies to any image size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

IGNORE_INDEX = 255
NORMALIZATIONS = ("official_bgr", "imagenet_rgb")
_BGR_MEAN = (103.530, 116.280, 123.675)
_RGB_MEAN = (0.485, 0.456, 0.406)
_RGB_STD = (0.229, 0.224, 0.225)


def _check_mode(mode: str) -> None:
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {mode!r}; valid: {', '.join(NORMALIZATIONS)}")


def _stat(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=like.device).view(3, 1, 1)


def normalize(image: torch.Tensor, mode: str = "official_bgr") -> torch.Tensor:
    """Normalise a uint8 RGB image tensor ``[..., 3, H, W]`` to float32 network input.

    Args:
        image: uint8 (or float in 0..255) RGB tensor, channel dimension at -3.
        mode: ``"official_bgr"`` or ``"imagenet_rgb"``.

    Returns:
        float32 tensor of the same shape (BGR channel order for ``"official_bgr"``).
    """
    _check_mode(mode)
    x = image.to(torch.float32)
    if mode == "official_bgr":
        return x.flip(-3) - _stat(_BGR_MEAN, x)
    return (x / 255.0 - _stat(_RGB_MEAN, x)) / _stat(_RGB_STD, x)


def denormalize(image: torch.Tensor, mode: str = "official_bgr") -> torch.Tensor:
    """Invert :func:`normalize`: float network input ``[..., 3, H, W]`` -> uint8 RGB."""
    _check_mode(mode)
    x = image.detach().to(torch.float32)
    if mode == "official_bgr":
        x = (x + _stat(_BGR_MEAN, x)).flip(-3)
    else:
        x = (x * _stat(_RGB_STD, x) + _stat(_RGB_MEAN, x)) * 255.0
    return x.round().clamp_(0, 255).to(torch.uint8)


def pad_to_multiple(image: torch.Tensor, mask: torch.Tensor | None = None,
                    multiple: int = 32) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pad bottom/right so H and W are multiples of ``multiple`` (spec §2.1).

    Args:
        image: Normalised float tensor ``[..., C, H, W]``; padded with 0.
        mask: Optional label tensor ``[..., H, W]``; padded with 255 (ignore).
        multiple: Divisor (32 = the network's output stride).

    Returns:
        ``(image, mask)``; ``mask`` is None when none was given.
    """
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph), value=0.0)
        if mask is not None:
            mask = F.pad(mask, (0, pw, 0, ph), value=IGNORE_INDEX)
    return image, mask


def _first_image_hw(flat_inputs: list[Any]) -> tuple[int, int]:
    for inpt in flat_inputs:
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return int(inpt.shape[-2]), int(inpt.shape[-1])
    raise TypeError("expected a tv_tensors.Image or tv_tensors.Mask input")


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``scale_range`` (bilinear image, nearest mask)."""

    def __init__(self, scale_range: tuple[float, float]) -> None:
        super().__init__()
        lo, hi = float(scale_range[0]), float(scale_range[1])
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range}")
        self.scale_range = (lo, hi)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _first_image_hw(flat_inputs)
        # torch RNG (not numpy) so torch.manual_seed and DataLoader worker seeding apply.
        s = float(torch.empty(()).uniform_(*self.scale_range))
        return {"size": [max(1, round(h * s)), max(1, round(w * s))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        # v2 resizes tv_tensors.Mask with nearest neighbour whatever the interpolation argument.
        return v2.functional.resize(inpt, params["size"], antialias=True)


class CenterPadTo(v2.Transform):
    """Pad centrally up to ``size`` where smaller (spec §5.2): image 0, mask 255."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _first_image_hw(flat_inputs)
        dh, dw = max(0, self.size[0] - h), max(0, self.size[1] - w)
        # order: left, top, right, bottom
        return {"padding": [dw // 2, dh // 2, dw - dw // 2, dh - dh // 2]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["padding"]):
            return inpt
        fill = IGNORE_INDEX if isinstance(inpt, tv_tensors.Mask) else 0
        return v2.functional.pad(inpt, params["padding"], fill=fill)


class SegTransform:
    """Full per-sample pipeline: numpy image/label -> normalised tensor, int64 mask, size.

    Args:
        train: Apply the random training augmentation (else deterministic eval transform).
        crop_hw: Training crop size ``(h, w)``; None = no crop. Ignored in eval, which always
            uses the full (optionally resized) image.
        normalization: ``"official_bgr"`` or ``"imagenet_rgb"``.
        scale_range: Random scale factor range for training.
        resize_hw: If given, first resize every sample to ``(h, w)`` (train and eval), e.g.
            CamVid 360x480 -> 240x320 for CPU runs.
        size_divisor: Final bottom/right padding multiple.
    """

    def __init__(self, train: bool, crop_hw: tuple[int, int] | None = None,
                 normalization: str = "official_bgr",
                 scale_range: tuple[float, float] = (0.5, 2.0),
                 resize_hw: tuple[int, int] | None = None, size_divisor: int = 32) -> None:
        _check_mode(normalization)
        self.train, self.normalization, self.size_divisor = train, normalization, size_divisor
        ops: list[v2.Transform] = []
        if resize_hw is not None:
            ops.append(v2.Resize(list(resize_hw), antialias=True))
        if train:
            ops += [RandomScale(scale_range), v2.RandomHorizontalFlip(p=0.5)]
            if crop_hw is not None:
                ops += [CenterPadTo(crop_hw), v2.RandomCrop(list(crop_hw))]
        self.geometric = v2.Compose(ops) if ops else None

    def __call__(self, image: np.ndarray, label: np.ndarray
                 ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Transform one sample.

        Args:
            image: uint8 RGB array ``[H, W, 3]``.
            label: uint8 class-index array ``[H, W]`` (255 = ignore).

        Returns:
            ``(image float32 [3, H', W'], mask int64 [H', W'], (h, w) before pad-to-multiple)``.
        """
        img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
        msk = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(label)))
        if self.geometric is not None:
            img, msk = self.geometric(img, msk)
        hw = (int(img.shape[-2]), int(img.shape[-1]))
        x = normalize(img.as_subclass(torch.Tensor), self.normalization)
        y = msk.as_subclass(torch.Tensor).to(torch.int64)
        x, y = pad_to_multiple(x, y, self.size_divisor)
        return x.contiguous(), y.contiguous(), hw
