"""Images from outside (imported, uploaded, or edited by hand in the photo folder), opened safely.

Every caller gets the same guards: a byte limit, a pixel limit read from the header before decoding,
decompression bombs refused, an optional list of formats, and any decoder failure as one clear error.

Memory is bounded by the pixels actually decoded: at most MAX_DECODED_PIXELS (4 bytes each, 64 MB). A JPEG is
decoded at a reduced scale when a small result is wanted (draft: 1/2 to 1/8), so a camera's 40-megapixel JPEG
fits; PNG and WebP have no such scale, so a 6300 x 6300 PNG of 150 KB, 159 MB decoded, is refused before decoding.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps

from screenpop.daemon.i18n import lazy_gettext, lazy_number

# The image limits, one home for all of them:
MB = 1024 * 1024
MAX_PIXELS = 40_000_000  # in the header: what any caller accepts at all
MAX_DECODED_PIXELS = 16_000_000  # decoded (after a JPEG's draft scale): 4000 x 4000
MAX_INCOMING_BYTES = 50 * MB  # a photo imported or uploaded, kept as it came (photofiles.py)
MAX_STORED_BYTES = MAX_INCOMING_BYTES  # a file in the photo folder served or resized (photos.py): an original
INCOMING_FORMATS = ("JPEG", "PNG", "WEBP")  # what an imported or uploaded photo may be


class ImageRejected(ValueError):
    """The file is not an image we accept; the message says why, for a report or a log line."""


def load_image(
    path: Path,
    max_bytes: int,
    max_pixels: int,
    formats: tuple[str, ...] = (),
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """The decoded image, upright per its EXIF orientation; ImageRejected when it is unreadable or over a limit.

    draft lets JPEG decode at a reduced scale when only a small result is needed; the decoded size, after it,
    must stay within MAX_DECODED_PIXELS.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageRejected(lazy_gettext("cannot read: %(reason)s", reason=exc.strerror)) from None
    if size > max_bytes:
        raise ImageRejected(lazy_gettext("file is larger than %(max_bytes)s MB", max_bytes=max_bytes // MB))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                if formats and im.format not in formats:
                    raise ImageRejected(lazy_gettext("is %(format)s, not %(formats)s or %(last)s", format=im.format,
                                                     formats=", ".join(formats[:-1]), last=formats[-1]))
                if im.width * im.height > max_pixels:
                    raise ImageRejected(lazy_gettext("image is %(width)sx%(height)s, more than %(max_pixels)s pixels",
                                                     width=im.width, height=im.height,
                                                     max_pixels=lazy_number(max_pixels)))
                width, height = im.size
                if draft is not None:
                    im.draft("RGB", draft)
                if im.width * im.height > MAX_DECODED_PIXELS:
                    size = {"width": width, "height": height, "max_pixels": lazy_number(MAX_DECODED_PIXELS)}
                    if im.format == "JPEG":
                        raise ImageRejected(lazy_gettext(
                            "image is %(width)sx%(height)s, more than %(max_pixels)s pixels to decode", **size))
                    raise ImageRejected(lazy_gettext("image is %(width)sx%(height)s, more than %(max_pixels)s pixels "
                                                     "to decode (a JPEG may be larger)", **size))
                im.load()
                ImageOps.exif_transpose(im, in_place=True)  # not a copy of the whole image
                return im
        except ImageRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(lazy_gettext("refused as a decompression bomb (%(reason)s)", reason=exc)) from None
        except Exception as exc:  # Pillow's decoders raise many types on corrupt input
            raise ImageRejected(lazy_gettext("not a readable image (%(name)s: %(reason)s)",
                                             name=type(exc).__name__, reason=exc)) from None
