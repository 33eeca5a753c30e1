"""Per-frame image stages of the reference (REFERENCE.md section B, steps 3-12), as pure functions.

Images are OpenCV BGR uint8 `H x W x 3`; tensors float32 CHW.

    box = crop_box(landmarks)                       # xmin, ymin, xmax, ymax
    crop = crop_328(frame, box)                     # (328, 328, 3) uint8, bicubic
    image = unet_input(crop)                        # (6, 320, 320) float32: real + masked, /255
    mouth = mouth_from_output(unet_output)          # (320, 320, 3) uint8, truncated
    region = pasted_region(crop, mouth, box)        # (h, w, 3) uint8, bicubic back to the box size
    frame_out = paste(frame, region, box)           # (H, W, 3) uint8

The choices a port can get wrong are knobs with the original's values as defaults: `FrameGeometry` (which
template and crop box a frame uses, how the crop is made), `NetworkInput` (the U-Net image input) and
`Finish` (from the U-Net output to the output frame). The simulation of port mistakes
(`harness/ports/simulate.py`) runs these same functions with other values.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ParityError
from .knobs import check_choices, choice

Box = tuple[int, int, int, int]

CROP_SIZE = 328
INNER = (4, 324)  # the 320 x 320 region of the 328 crop that the U-Net sees and replaces
MASK_RECT = (5, 5, 310, 305)  # cv2.rectangle (x, y, w, h): rows 5..309, cols 5..314 become black
INTERPOLATION = cv2.INTER_CUBIC  # OpenCV bicubic, a = -0.75
LANDMARK_COUNT = 110
LEFT_JAW, RIGHT_JAW, NOSE = 1, 31, 52  # the landmark points that define the crop box
CHANNEL_ORDERS = ("bgr", "rgb")
HALF_ORDERS = ("real,masked", "masked,real")
INPUT_SCALES = ("/255", "none", "[-1,1]")
ROUNDINGS = ("truncate", "round")
BLENDS = ("paste", "feather", "clone")  # how the pasted region meets the frame: written over it, alpha-ramped, gradient-domain cloned
# Where output pixel x samples an axis of n_in source pixels resized to n_out: OpenCV's half-pixel centres
# ((x + 0.5) * n_in / n_out - 0.5), corner-aligned (x * (n_in - 1) / (n_out - 1): PyTorch's align_corners=True, and many
# hand-written resizes) or asymmetric (x * n_in / n_out: TensorFlow 1's default, a naive loop).
RESIZE_MAPPINGS = ("half-pixel", "corner", "asymmetric")
MAPPED_KERNELS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC)  # the kernels `resize` maps otherwise than OpenCV


@dataclass(frozen=True)
class FrameGeometry:
    """Which template and crop box output frame i uses, and how its 328 crop is made (REFERENCE.md B.1-B.4).

    The template of frame i is `schedule[i] + template_offset` (clipped to the templates), or `template_sequence[i]`
    when a sequence is given (frames past its end follow the schedule); its crop box is
    that of template `t + landmark_offset`, or of `box_template` for every frame, or of template `box_sequence[i]`
    where that is given and not -1 (`Dataset.frame_template`, `Dataset.frame_box`). JPEG qualities (None: none)
    re-encode the template before use (it is cropped and pasted into) or the 328 crop.
    """

    template_offset: int = 0
    template_sequence: tuple[int, ...] | None = None  # the template of each output frame, in place of the schedule (None: the schedule)
    landmark_offset: int = 0
    box_template: int | None = None
    box_sequence: tuple[int, ...] | None = None  # the template whose crop box each output frame uses (-1, or past its end: as above)
    template_jpeg: int | None = None
    interpolation: int = INTERPOLATION  # of the resize to 328 x 328
    mapping: str = choice("half-pixel", RESIZE_MAPPINGS, "resize mapping")  # of the resize to 328 x 328 (`resize`)
    crop_jpeg: int | None = None

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass(frozen=True)
class NetworkInput:
    """The U-Net image input made from the 328 crop (REFERENCE.md B.5-B.7).

    `mask_rect`: the black rectangle (x, y, w, h) of the masked half, None: left unmasked; `channels`: the
    order of each half's planes; `halves`: which half comes first; `scale`: "/255" (0..1), "none" (0..255)
    or "[-1,1]".
    """

    mask_rect: Box | None = MASK_RECT
    channels: str = choice("bgr", CHANNEL_ORDERS, "channel order")
    halves: str = choice("real,masked", HALF_ORDERS, "order of the halves")
    scale: str = choice("/255", INPUT_SCALES, "input scaling")

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass(frozen=True)
class Finish:
    """From the U-Net output to the output frame (REFERENCE.md B.10-B.12).

    `rounding` of `output * 255` to uint8; `mouth_channels`: the order the U-Net output is read in; `mouth_jpeg`:
    the mouth JPEG-compressed; `canvas`: the mouth written into the 328 crop before the resize back (False: the
    mouth alone resized onto the box); `interpolation` and `mapping` of that resize (`resize`); `region_channels` and `frame_channels`:
    the order the pasted region and the whole frame are written in; `blend`: how the region meets the frame:
    written over it ("paste"), alpha-blended with a linear ramp `feather` pixels wide from the box edge inward
    ("feather"), or gradient-domain cloned (`cv2.seamlessClone`, NORMAL_CLONE: "clone"); `output_jpeg`: the
    frame JPEG-encoded (a lossy frame writer).
    """

    rounding: str = choice("truncate", ROUNDINGS)
    mouth_channels: str = choice("bgr", CHANNEL_ORDERS, "channel order")
    mouth_jpeg: int | None = None
    canvas: bool = True
    interpolation: int = INTERPOLATION
    mapping: str = choice("half-pixel", RESIZE_MAPPINGS, "resize mapping")
    region_channels: str = choice("bgr", CHANNEL_ORDERS, "channel order")
    frame_channels: str = choice("bgr", CHANNEL_ORDERS, "channel order")
    blend: str = choice("paste", BLENDS, "blend of the pasted region")
    feather: int = 0  # width in pixels of the "feather" ramp
    output_jpeg: int | None = None

    def __post_init__(self) -> None:
        check_choices(self)


def crop_box(landmarks: np.ndarray) -> Box:
    """`(xmin, ymin, xmax, ymax)`: x from points 1 and 31, top at point 52, square below it.

    `landmarks` are the `.lms` points as float32 `(110, 2)`; they are truncated to int32 first.
    """
    points = landmarks.astype(np.int32)
    xmin = int(points[LEFT_JAW][0])
    ymin = int(points[NOSE][1])
    xmax = int(points[RIGHT_JAW][0])
    return xmin, ymin, xmax, ymin + (xmax - xmin)


def template_image(image: np.ndarray, geometry: FrameGeometry = FrameGeometry()) -> np.ndarray:
    """The template as the frame is made from it: as read, or re-encoded as JPEG (`geometry.template_jpeg`)."""
    return image if geometry.template_jpeg is None else jpeg_roundtrip(image, geometry.template_jpeg)


def crop_328(frame: np.ndarray, box: Box, geometry: FrameGeometry = FrameGeometry()) -> np.ndarray:
    """The box's pixels resized to 328 x 328 with OpenCV bicubic."""
    xmin, ymin, xmax, ymax = box
    crop = resize(frame[ymin:ymax, xmin:xmax], (CROP_SIZE, CROP_SIZE), geometry.interpolation, geometry.mapping)
    return crop if geometry.crop_jpeg is None else jpeg_roundtrip(crop, geometry.crop_jpeg)


def real_and_masked(crop: np.ndarray, mask_rect: Box | None = MASK_RECT) -> tuple[np.ndarray, np.ndarray]:
    """The inner 320 x 320 of the crop, and a copy with the mask rectangle filled black."""
    real = crop[INNER[0] : INNER[1], INNER[0] : INNER[1]].copy()
    masked = real.copy() if mask_rect is None else cv2.rectangle(real.copy(), mask_rect, (0, 0, 0), -1)
    return real, masked


def unet_input(crop: np.ndarray, network_input: NetworkInput = NetworkInput()) -> np.ndarray:
    """`(6, 320, 320)` float32: channels B,G,R of the real crop then of the masked one, divided by 255."""
    real, masked = real_and_masked(crop, network_input.mask_rect)
    halves = (real, masked) if network_input.halves == "real,masked" else (masked, real)
    order = slice(None) if network_input.channels == "bgr" else slice(None, None, -1)
    planes = np.stack([plane for half in halves for plane in cv2.split(half)[order]])  # HWC to CHW: B, G, R, B, G, R (uint8)
    if network_input.scale == "none":
        return planes.astype(np.float32)
    if network_input.scale == "[-1,1]":
        return np.ascontiguousarray(planes.astype(np.float32) / np.float32(127.5) - np.float32(1.0))
    # uint8 -> float32, then / 255 in float32: the same values as `.astype(np.float32) / 255`, in ~40% of
    # the time (the production pipeline runs this for every frame)
    return np.divide(planes, np.float32(255.0), out=np.empty(planes.shape, np.float32))


def mouth_box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The frame pixels of the U-Net's 320 x 320 (crop rows and columns 4..324 of 328) inside crop box `box`, rounded inward."""
    x0, y0, x1, y1 = (int(v) for v in box)
    width, height = x1 - x0, y1 - y0
    return (x0 + -(-INNER[0] * width // CROP_SIZE), y0 + -(-INNER[0] * height // CROP_SIZE),
            x0 + INNER[1] * width // CROP_SIZE, y0 + INNER[1] * height // CROP_SIZE)


def mouth_from_output(unet_output: np.ndarray, finish: Finish = Finish()) -> np.ndarray:
    """U-Net output `(3, 320, 320)` in [0, 1] to uint8 HWC: `* 255` then truncation (not rounding)."""
    if finish.rounding == "truncate":
        mouth = (unet_output.transpose(1, 2, 0) * np.float32(255)).astype(np.uint8)
    else:
        mouth = np.clip(np.floor(unet_output.transpose(1, 2, 0) * np.float32(255) + np.float32(0.5)), 0, 255).astype(np.uint8)
    mouth = _in_order(mouth, finish.mouth_channels)
    return mouth if finish.mouth_jpeg is None else jpeg_roundtrip(mouth, finish.mouth_jpeg)


def pasted_region(crop: np.ndarray, mouth: np.ndarray, box: Box, finish: Finish = Finish()) -> np.ndarray:
    """The mouth pasted into the crop's inner 320 x 320, resized back to the box size with bicubic."""
    xmin, ymin, xmax, ymax = box
    if finish.canvas:
        restored = crop.copy()
        restored[INNER[0] : INNER[1], INNER[0] : INNER[1]] = mouth
    else:
        restored = mouth
    return _in_order(resize(restored, (xmax - xmin, ymax - ymin), finish.interpolation, finish.mapping), finish.region_channels)


def paste(frame: np.ndarray, region: np.ndarray, box: Box, finish: Finish = Finish()) -> np.ndarray:
    """A copy of the template frame with `region` written into the box (or blended in: `finish.blend`)."""
    xmin, ymin, xmax, ymax = box
    if finish.blend == "clone":
        out = clone(frame, region, box)
    else:
        out = frame.copy()
        if finish.blend == "feather" and finish.feather > 0:
            alpha = feather_alpha(region.shape[:2], finish.feather)[..., None]
            under = out[ymin:ymax, xmin:xmax].astype(np.float32)
            out[ymin:ymax, xmin:xmax] = np.clip(np.rint(under + alpha * (region.astype(np.float32) - under)), 0, 255).astype(np.uint8)
        else:
            out[ymin:ymax, xmin:xmax] = region
    out = _in_order(out, finish.frame_channels)
    return out if finish.output_jpeg is None else jpeg_roundtrip(out, finish.output_jpeg)


def feather_alpha(shape: tuple[int, int], width: int) -> np.ndarray:
    """`(h, w)` float32 weights of the pasted region: `(d + 0.5) / width` clipped to 1, d the distance in pixels
    from the box edge (0 on the edge pixels)."""
    height, wide = shape
    rows = np.minimum(np.arange(height), np.arange(height)[::-1])
    cols = np.minimum(np.arange(wide), np.arange(wide)[::-1])
    distance = np.minimum(rows[:, None], cols[None, :]).astype(np.float32)
    return np.minimum(1.0, (distance + np.float32(0.5)) / np.float32(max(1, width))).astype(np.float32)


def clone(frame: np.ndarray, region: np.ndarray, box: Box) -> np.ndarray:
    """The region cloned into the box in the gradient domain (`cv2.seamlessClone`, NORMAL_CLONE, the whole region as
    the mask): its gradients kept, its colours solved for from the frame around the box."""
    xmin, ymin, xmax, ymax = box
    mask = np.full(region.shape[:2], 255, np.uint8)
    centre = ((xmin + xmax) // 2, (ymin + ymax) // 2)
    return np.asarray(cv2.seamlessClone(np.ascontiguousarray(region), np.ascontiguousarray(frame), mask, centre, cv2.NORMAL_CLONE))


def resize(image: np.ndarray, size: tuple[int, int], interpolation: int = INTERPOLATION, mapping: str = "half-pixel") -> np.ndarray:
    """`image` resized to `size` (width, height): `cv2.resize` with OpenCV's half-pixel mapping; with another `mapping`
    (`RESIZE_MAPPINGS`), the same kernel (nearest, bilinear or bicubic) sampled where that mapping puts each output pixel
    (`cv2.remap`, edges replicated; its bilinear weights are quantized to 1/32, yet off a float64 bilinear by one level
    on 0.03% of a 328 -> 201 box's pixels)."""
    if mapping == "half-pixel":
        return np.asarray(cv2.resize(image, size, interpolation=interpolation))
    if interpolation not in MAPPED_KERNELS:
        raise ParityError(f"a {mapping} resize mapping is simulated for nearest, bilinear and bicubic, not OpenCV flag {interpolation}")
    width, height = size
    map_x, map_y = np.meshgrid(_source(image.shape[1], width, interpolation, mapping), _source(image.shape[0], height, interpolation, mapping))
    return np.asarray(cv2.remap(image, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE))


def _source(size_in: int, size_out: int, interpolation: int, mapping: str) -> np.ndarray:
    """float32 (size_out,): where along an axis of `size_in` source pixels each output pixel samples."""
    x = np.arange(size_out, dtype=np.float64)
    if mapping == "corner":
        source = x * ((size_in - 1) / (size_out - 1)) if size_out > 1 else np.zeros(1)
    else:
        source = x * (size_in / size_out)
    if interpolation == cv2.INTER_NEAREST:  # the pixel the mapping rounds to (corner) or truncates to (asymmetric, as OpenCV's nearest)
        source = np.floor(source + 0.5) if mapping == "corner" else np.floor(source)
    return source.astype(np.float32)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image JPEG-encoded at `quality` by OpenCV (libjpeg-turbo, 4:2:0) and decoded again."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ParityError(f"OpenCV could not JPEG-encode a {image.shape} image")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ParityError(f"OpenCV could not decode its own JPEG of a {image.shape} image")
    return np.asarray(decoded)


def _in_order(image: np.ndarray, channels: str) -> np.ndarray:
    """A BGR image as written in `channels` order: itself, or channel-reversed."""
    return image if channels == "bgr" else np.ascontiguousarray(image[..., ::-1])
