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
        raise ImageRejected(f"cannot read: {exc.strerror}") from None
    if size > max_bytes:
        raise ImageRejected(f"file is larger than {max_bytes // MB} MB")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                if formats and im.format not in formats:
                    raise ImageRejected(f"is {im.format}, not {', '.join(formats[:-1])} or {formats[-1]}")
                if im.width * im.height > max_pixels:
                    raise ImageRejected(f"image is {im.width}x{im.height}, more than {max_pixels:,} pixels")
                width, height = im.size
                if draft is not None:
                    im.draft("RGB", draft)
                if im.width * im.height > MAX_DECODED_PIXELS:
                    raise ImageRejected(f"image is {width}x{height}, more than {MAX_DECODED_PIXELS:,} pixels "
                                        f"to decode{' (a JPEG may be larger)' if im.format != 'JPEG' else ''}")
                im.load()
                ImageOps.exif_transpose(im, in_place=True)  # not a copy of the whole image
                return im
        except ImageRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(f"refused as a decompression bomb ({exc})") from None
        except Exception as exc:  # Pillow's decoders raise many types on corrupt input
            raise ImageRejected(f"not a readable image ({type(exc).__name__}: {exc})") from None
