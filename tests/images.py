"""Small image files the tests upload: built here, in the format a user would hand in."""

from __future__ import annotations

import io


def png_of_a_one() -> bytes:
    """A 96×96 PNG of a hand-drawn "1": a dark vertical stroke on white (the dashboard inverts it for digits)."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (96, 96), 255)
    ImageDraw.Draw(image).line([(48, 12), (48, 84)], fill=0, width=14)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
