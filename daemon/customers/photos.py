"""Customer photos for the card: the stored photo cropped square and resized, or a placeholder with initials.

Photos are files in [database] photo_dir written by `screenpop import photos` or an upload (verified there and
kept as they came, daemon/customers/photofiles.py): the copies for pops and lists are made from that original.
The folder may be edited by hand, so every file is treated as untrusted:
size and pixel limits, decompression bombs refused, any decoding error gives the placeholder and one log
line. Results are cached in memory (at most CACHE_BYTES) by (customer, size, file, mtime); decoding runs in gevent's thread pool
so a large file does not stall the pushes.

Every image job of the daemon (a photo rendered here, a photo uploaded on the web pages) goes through image_job:
at most IMAGE_JOBS at once, the others wait their turn, so concurrent requests cannot add up decoded images
(each up to daemon/customers/images.py's MAX_DECODED_PIXELS, 64 MB) until memory runs out.
"""
from __future__ import annotations

import io
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.lock
from flask import Response
from PIL import Image, ImageDraw, ImageFont, ImageOps

from screenpop.daemon.customers.images import MAX_PIXELS, MAX_STORED_BYTES, load_image

log = logging.getLogger("screenpop.http")

MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 32, 512, 128
IMAGE_JOBS = 2
CACHE_BYTES = 32 * 1024 * 1024  # 128 px photos are ~5 kB: thousands fit; a 512 px one is ~40 kB
OTHER_COLOUR = "#64748b"  # a customer whose category is not in the list


_image_jobs = gevent.lock.BoundedSemaphore(IMAGE_JOBS)


def image_job(fn: Callable, *args: Any) -> Any:
    """fn(*args) on gevent's thread pool, at most IMAGE_JOBS at a time in the whole daemon (the rest wait)."""
    with _image_jobs:
        return gevent.get_hub().threadpool.apply(fn, args)


def clamp_size(text: str | None) -> int:
    """The requested edge length in pixels, clamped to MIN_SIZE..MAX_SIZE; DEFAULT_SIZE if absent or not a number."""
    try:
        value = int(text) if text else DEFAULT_SIZE
    except ValueError:
        value = DEFAULT_SIZE
    return max(MIN_SIZE, min(MAX_SIZE, value))


def initials(label: str) -> str:
    """Up to two letters from the first and last word of a name: "Jón Jónsson" -> "JJ"; "?" when there are none."""
    words = [w for w in label.split() if w[:1].isalnum()]
    if not words:
        return "?"
    letters = words[0][0] + (words[-1][0] if len(words) > 1 else "")
    return letters.upper()


def placeholder(label: str, colour: str | None, size: int) -> bytes:
    """A square JPEG: the initials, white, on the colour of the customer's category (#rrggbb, from the list)."""
    image = Image.new("RGB", (size, size), colour or OTHER_COLOUR)
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=max(10, int(size * 0.42)))
    except TypeError:  # Pillow without FreeType: the small bitmap font
        font = ImageFont.load_default()
    draw.text((size / 2, size / 2), initials(label), fill=(255, 255, 255), font=font, anchor="mm")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def resize(path: Path, size: int) -> bytes:
    """The photo at path, cropped to a square around its centre, size x size, as JPEG; ValueError when unusable."""
    image = load_image(path, MAX_STORED_BYTES, MAX_PIXELS, draft=(size, size)).convert("RGB")
    image = ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def _resize_or_reason(path: Path, size: int) -> tuple[bytes | None, str]:
    """resize() for the thread pool, which would print the traceback of anything raised."""
    try:
        return resize(path, size), ""
    except (ValueError, OSError) as exc:
        return None, str(exc)


class Photos:
    """Rendered photos and placeholders, cached."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._cache: OrderedDict[tuple, tuple[bytes, bool]] = OrderedDict()
        self._cached_bytes = 0

    def path(self, photo: str) -> Path | None:
        """The file of a stored photo name in the folder; None for a name that is not a plain file name."""
        if not photo or "/" in photo or "\\" in photo or photo.startswith("."):
            return None
        return self.folder / photo

    def render(self, customer_id: int, label: str, colour: str | None, photo: str | None, size: int) -> tuple[bytes, bool]:
        """(JPEG bytes, is a placeholder) for a customer whose stored photo file name is photo (or None)."""
        key: tuple
        path = None
        if photo:
            path = self.path(photo)
            if path is None:
                log.warning("customer %d: photo name %r is not a plain file name; using the placeholder", customer_id, photo)
            else:
                try:
                    st = path.stat()
                except OSError as exc:
                    log.warning("customer %d: photo %s cannot be read (%s); using the placeholder", customer_id, path, exc.strerror)
                    path = None
        if path is not None:
            key = (customer_id, size, photo, st.st_mtime_ns, st.st_size)
        else:
            key = (customer_id, size, None, label, colour)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        result: tuple[bytes, bool] | None = None
        if path is not None:
            data, problem = image_job(_resize_or_reason, path, size)
            if data is not None:
                result = data, False
            else:
                log.warning("customer %d: photo %s is unusable (%s); using the placeholder", customer_id, path, problem)
        if result is None:
            result = placeholder(label, colour, size), True
        previous = self._cache.pop(key, None)  # two requests rendered it at once
        if previous is not None:
            self._cached_bytes -= len(previous[0])
        self._cache[key] = result
        self._cached_bytes += len(result[0])
        while self._cached_bytes > CACHE_BYTES:
            _, (old, _) = self._cache.popitem(last=False)
            self._cached_bytes -= len(old)
        return result


def photo_response(hub, photos: Photos, customer_id: int, size_arg: str | None) -> Response | None:
    """The photo (or placeholder) of a customer as an HTTP response, for the API and the web pages; None if unknown."""
    info = hub.worker.run(hub.cards.customer_for_photo, customer_id)
    if info is None:
        return None
    label, colour, stored = info
    data, is_placeholder = photos.render(customer_id, label, colour, stored, clamp_size(size_arg))
    out = Response(data, mimetype="image/jpeg")
    out.headers["Cache-Control"] = "private, max-age=300"
    out.headers["X-Screenpop-Photo"] = "placeholder" if is_placeholder else "photo"
    return out
