"""ImageNet preprocessing, in the two profiles of MLCommons' reference app
(vision/classification_and_detection/python/dataset.py):

- ``mlperf`` (``pre_process_vgg``, for the ONNX, TensorFlow and TFLite files): decode to
  RGB, resize the short side to 256 keeping the aspect ratio with area interpolation,
  centre-crop 224, float32, subtract the channel means, no scaling.
- ``torchvision`` (``pre_process_imagenet_pytorch``, for torchvision's weights): resize the
  short side to 256 with bilinear interpolation, centre-crop 224, scale to [0, 1],
  normalise with ImageNet's mean and standard deviation.

Either ends NCHW (ONNX, PyTorch) or NHWC (TF/TFLite), as the model's input says. Pillow's
BOX filter is area interpolation: each output pixel is the area-weighted mean of the
input pixels it covers, which is what OpenCV's INTER_AREA computes when shrinking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlbox_bench.errors import BenchError

PREPROCESSING_VERSION = 1  # bump when the output changes: it keys the .npy cache
CHANNEL_MEANS = np.array([123.68, 116.78, 103.94], dtype=np.float32)  # R, G, B
TORCHVISION_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
TORCHVISION_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESIZE_SCALE = 87.5  # the reference resizes to 100/87.5 of the crop: 224 -> 256


def image_layout(shape: tuple[int, ...]) -> tuple[str, int]:
    """(layout, size) of a one-sample image input shape: (3,H,W) or (H,W,3), H == W."""
    if len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2]:
        return "NCHW", shape[1]
    if len(shape) == 3 and shape[2] == 3 and shape[0] == shape[1]:
        return "NHWC", shape[0]
    msg = f"the model's input shape {shape} is not a square RGB image; --dataset needs an image classifier"
    raise BenchError(msg)


def resized_size(width: int, height: int, crop: int) -> tuple[int, int]:
    """The reference's resize_with_aspectratio arithmetic (int truncation included)."""
    target = int(100.0 * crop / RESIZE_SCALE)
    if height > width:
        return target, int(target * height / width)
    return int(target * width / height), target


def torchvision_size(width: int, height: int, crop: int) -> tuple[int, int]:
    """torchvision's F.resize(img, 256): the short side becomes 256, the long side is
    truncated to keep the aspect ratio."""
    short = int(100.0 * crop / RESIZE_SCALE)
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def preprocess_imagenet(path: Path, crop: int = 224, layout: str = "NCHW", profile: str = "mlperf") -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")  # grayscale and CMYK JPEGs exist in ImageNet
    except (OSError, ValueError) as err:
        msg = f"cannot decode image {path}: {err}"
        raise BenchError(msg) from None
    if profile == "torchvision":
        width, height = torchvision_size(rgb.width, rgb.height, crop)
        resized = np.asarray(rgb.resize((width, height), Image.Resampling.BILINEAR))
        top, left = round((height - crop) / 2.0), round((width - crop) / 2.0)  # F.center_crop
        cropped = resized[top : top + crop, left : left + crop].astype(np.float32) / np.float32(255.0)
        cropped = (cropped - TORCHVISION_MEAN) / TORCHVISION_STD
    else:
        width, height = resized_size(rgb.width, rgb.height, crop)
        resized = np.asarray(rgb.resize((width, height), Image.Resampling.BOX))
        top, left = int((height - crop) / 2), int((width - crop) / 2)
        cropped = resized[top : top + crop, left : left + crop].astype(np.float32)
        cropped -= CHANNEL_MEANS
    if layout == "NCHW":
        return np.ascontiguousarray(cropped.transpose(2, 0, 1))
    return np.ascontiguousarray(cropped)


def preprocess_openimages(path: Path, height: int, width: int, layout: str = "NCHW") -> np.ndarray:
    """MLCommons' ``pre_process_openimages_retinanet``: the whole image (no crop) resized
    to the model's input with OpenCV's INTER_LINEAR arithmetic, RGB, float32, / 255."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            # cv2.imread turns an image by its EXIF orientation; Pillow only when asked.
            rgb = (ImageOps.exif_transpose(img) or img).convert("RGB")
    except (OSError, ValueError) as err:
        msg = f"cannot decode image {path}: {err}"
        raise BenchError(msg) from None
    pixels = resize_linear(np.asarray(rgb, dtype=np.float32), height, width)
    pixels /= np.float32(255.0)
    if layout == "NCHW":
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return pixels


def resize_linear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR) for a float32
    HxWxC image: each output pixel samples the input at ((x + 0.5) * scale - 0.5), blends
    its two neighbours per axis (no antialiasing when shrinking, unlike Pillow's
    BILINEAR), and clamps at the edges as OpenCV does. Width first, then height."""
    x0, x1, wx = _linear_taps(image.shape[1], width)
    y0, y1, wy = _linear_taps(image.shape[0], height)
    wx, wy = wx[None, :, None], wy[:, None, None]
    rows = image[:, x0] * (np.float32(1.0) - wx) + image[:, x1] * wx
    out: np.ndarray = rows[y0] * (np.float32(1.0) - wy) + rows[y1] * wy
    return out.astype(np.float32, copy=False)


def _linear_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output position: the left input index, the right one and the right one's weight."""
    position = ((np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5).astype(np.float32)
    left = np.floor(position).astype(np.int64)
    weight = position - left.astype(np.float32)
    before, past = left < 0, left >= source - 1
    left[before], weight[before] = 0, 0.0
    left[past], weight[past] = source - 1, 0.0
    return left, np.minimum(left + 1, source - 1), weight.astype(np.float32)
