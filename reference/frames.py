"""Per-frame image stages of the reference (REFERENCE.md section B, steps 3-12), as pure functions.

Images are OpenCV BGR uint8 `H x W x 3`; tensors float32 CHW.

    box = crop_box(landmarks)                       # xmin, ymin, xmax, ymax
    crop = crop_328(frame, box)                     # (328, 328, 3) uint8, bicubic
    image = unet_input(crop)                        # (6, 320, 320) float32: real + masked, /255
    mouth = mouth_from_output(unet_output)          # (320, 320, 3) uint8, truncated
    region = pasted_region(crop, mouth, box)        # (h, w, 3) uint8, bicubic back to the box size
    frame_out = paste(frame, region, box)           # (H, W, 3) uint8
"""

from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 328
INNER = (4, 324)  # the 320 x 320 region of the 328 crop that the U-Net sees and replaces
MASK_RECT = (5, 5, 310, 305)  # cv2.rectangle (x, y, w, h): rows 5..309, cols 5..314 become black
INTERPOLATION = cv2.INTER_CUBIC  # OpenCV bicubic, a = -0.75
LANDMARK_COUNT = 110
LEFT_JAW, RIGHT_JAW, NOSE = 1, 31, 52  # the landmark points that define the crop box


def crop_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """`(xmin, ymin, xmax, ymax)`: x from points 1 and 31, top at point 52, square below it.

    `landmarks` are the `.lms` points as float32 `(110, 2)`; they are truncated to int32 first.
    """
    points = landmarks.astype(np.int32)
    xmin = int(points[LEFT_JAW][0])
    ymin = int(points[NOSE][1])
    xmax = int(points[RIGHT_JAW][0])
    return xmin, ymin, xmax, ymin + (xmax - xmin)


def crop_328(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The box's pixels resized to 328 x 328 with OpenCV bicubic."""
    xmin, ymin, xmax, ymax = box
    return cv2.resize(frame[ymin:ymax, xmin:xmax], (CROP_SIZE, CROP_SIZE), interpolation=INTERPOLATION)


def real_and_masked(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inner 320 x 320 of the crop, and a copy with the mask rectangle filled black."""
    real = crop[INNER[0] : INNER[1], INNER[0] : INNER[1]].copy()
    masked = cv2.rectangle(real.copy(), MASK_RECT, (0, 0, 0), -1)
    return real, masked


def unet_input(crop: np.ndarray) -> np.ndarray:
    """`(6, 320, 320)` float32: channels B,G,R of the real crop then of the masked one, divided by 255."""
    real, masked = real_and_masked(crop)
    planes = np.stack([*cv2.split(real), *cv2.split(masked)])  # HWC to CHW: B, G, R, B, G, R (uint8)
    # uint8 -> float32, then / 255 in float32: the same values as `.astype(np.float32) / 255`, in ~40% of
    # the time (the production pipeline runs this for every frame)
    return np.divide(planes, np.float32(255.0), out=np.empty(planes.shape, np.float32))


def mouth_box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The frame pixels of the U-Net's 320 x 320 (crop rows and columns 4..324 of 328) inside crop box `box`, rounded inward."""
    x0, y0, x1, y1 = (int(v) for v in box)
    width, height = x1 - x0, y1 - y0
    return (x0 + -(-INNER[0] * width // CROP_SIZE), y0 + -(-INNER[0] * height // CROP_SIZE),
            x0 + INNER[1] * width // CROP_SIZE, y0 + INNER[1] * height // CROP_SIZE)


def mouth_from_output(unet_output: np.ndarray) -> np.ndarray:
    """U-Net output `(3, 320, 320)` in [0, 1] to uint8 HWC: `* 255` then truncation (not rounding)."""
    return (unet_output.transpose(1, 2, 0) * np.float32(255)).astype(np.uint8)


def pasted_region(crop: np.ndarray, mouth: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The mouth pasted into the crop's inner 320 x 320, resized back to the box size with bicubic."""
    xmin, ymin, xmax, ymax = box
    restored = crop.copy()
    restored[INNER[0] : INNER[1], INNER[0] : INNER[1]] = mouth
    return cv2.resize(restored, (xmax - xmin, ymax - ymin), interpolation=INTERPOLATION)


def paste(frame: np.ndarray, region: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of the template frame with `region` written into the box."""
    xmin, ymin, xmax, ymax = box
    out = frame.copy()
    out[ymin:ymax, xmin:xmax] = region
    return out
