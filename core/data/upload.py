"""A user's own image, converted to a dataset's input format — or refused with a clear message.

Pillow decodes the image; nothing is unpickled. The byte size and the pixel count are checked before any pixel is
decoded, so a decompression bomb (a small file that expands to gigapixels) is refused from its header alone.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from core.errors import DataError

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")


def _open(data: bytes):  # -> PIL.Image.Image
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        raise DataError("the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"the file is {len(data) / 2**20:.1f} MiB; images up to {MAX_UPLOAD_BYTES // 2**20} MiB "
                        "are accepted")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError as exc:
        raise DataError("the file is not an image Pillow can read (PNG, JPEG, GIF, BMP, WebP or TIFF)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError("the image declares too many pixels (a decompression bomb?); refused") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"the image could not be decoded (truncated or corrupt?): {exc}") from exc
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DataError(f"the image is {width}×{height} pixels; at most {MAX_PIXELS:,} pixels are accepted")
    return image


def _from_high_depth(image):  # -> tuple[PIL.Image.Image, str]
    """A 16-bit, 32-bit integer or float greyscale image as 8-bit "L", scaled by its depth, not clipped at 255
    (Pillow's own convert clips, which turns a 16-bit image black or white). Integer data within 0–255 is taken as
    8-bit (mode I only: I;16 is 16-bit by name), within 0–65535 as 16-bit; float data within [0, 1] as such;
    anything else is stretched min–max."""
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"the {image.mode} image has NaN or infinite pixels")
    low, high = float(values.min()), float(values.max())
    if image.mode == "F" and low >= 0.0 and high <= 1.0:
        scaled, how = values, "float pixels in [0, 1]"
    elif image.mode == "I" and low >= 0 and high <= 255:  # I;16 says its depth; plain I may hold 8-bit data
        scaled, how = values / 255.0, "8-bit values"
    elif image.mode != "F" and low >= 0 and high <= 65535:
        scaled, how = values / 65535.0, "16-bit values scaled to 8 bits"
    else:
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        how = f"values {low:g}…{high:g} stretched to the full range"
    eight = np.rint(scaled * 255.0).clip(0, 255).astype(np.uint8)
    return Image.fromarray(eight), f"{image.mode}: {how}"


def _to_mode(image, channels: int):  # -> tuple[PIL.Image.Image, str | None]
    """``image`` as "L" or "RGB", transparency flattened, and a note on the background it was flattened onto.

    Transparent pixels go onto the background that contrasts with what is drawn: black under a light drawing
    (alpha-weighted mean brightness above one half, with most of the canvas transparent: a white stroke on a
    transparent canvas), else white, as a
    transparent image looks in a browser on a light page (also when nothing is drawn at all).
    """
    from PIL import Image

    note = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64)
        brightness = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float64)
        drawn = alpha.sum() > 0
        # A drawing on a transparent canvas covers little of it; a sheet with transparent margins or corners (a
        # screenshot, a cropped scan) is mostly opaque and keeps the white background, whatever its colours.
        canvas = float((alpha > 127).mean()) < 0.5
        light = drawn and canvas and float((brightness * alpha).sum() / alpha.sum()) > 127.5
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255) if light else (255,) * 4), rgba)
        if alpha.min() < 255:  # an opaque image with an alpha channel has nothing to put anywhere
            note = ("transparent pixels put on black (the drawing is light)" if light else
                    f"transparent pixels put on white ({'the drawing is dark' if drawn else 'nothing is drawn'})")
    return image.convert("L" if channels == 1 else "RGB"), note


def image_to_input(data: bytes, input_shape: tuple[int, ...], *, invert: str = "auto",
                   background: str = "dark") -> tuple[np.ndarray, list[str]]:
    """Decode ``data`` into a float32 array of ``input_shape`` (C×H×W, values in [0,1]).

    ``invert``: "auto" inverts when the image's background brightness disagrees with the dataset's
    (``background`` "dark" for digits / MNIST, "light" otherwise); "yes" / "no" force it. Returns the array and
    notes on what was converted, for the page to show.
    """
    from PIL import Image

    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise DataError(f"this dataset's inputs have shape {tuple(input_shape)}, not an image; pick an example "
                        "from the dataset instead")
    channels, height, width = input_shape
    image = _open(data)
    notes = [f"{image.format} {image.size[0]}×{image.size[1]} {image.mode}"]
    try:
        image.seek(0)
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"the image could not be decoded: {exc}") from exc
    if getattr(image, "n_frames", 1) > 1:
        notes.append("first frame of an animation used")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image, how = _from_high_depth(image)
        notes.append(how)
    if image.mode not in ("L", "RGB"):
        notes.append(f"{image.mode} converted to {'greyscale' if channels == 1 else 'RGB'}")
    elif (image.mode == "L") != (channels == 1):
        notes.append(f"{'colour converted to greyscale' if channels == 1 else 'greyscale repeated to RGB'}")
    image, flattened = _to_mode(image, channels)
    if flattened:
        notes.append(flattened)
    image = image.resize((width, height), Image.Resampling.BOX if image.size[0] >= width else Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    border = np.concatenate([array[:, 0, :].ravel(), array[:, -1, :].ravel(), array[:, :, 0].ravel(),
                             array[:, :, -1].ravel()])
    light_border = float(border.mean()) > 0.5
    if invert == "yes" or (invert == "auto" and light_border == (background == "dark")):
        array = 1.0 - array
        notes.append("inverted to match the dataset's background")
    notes.append(f"resized to {width}×{height}")
    return np.ascontiguousarray(array.clip(0.0, 1.0)), notes
