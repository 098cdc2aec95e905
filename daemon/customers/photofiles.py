"""Customer photo files: checked, then stored as uploaded (the original file's bytes) in the photo folder under a
content-derived name; served back with the type of the format found in the file, never the sender's claim.

`screenpop import photos` and the web page's upload both store photos this way, so the daemon serves either alike.
The resized copies for pops and lists are made from this file on request (daemon/customers/photos.py). Photos
stored before originals were kept are the 512 px JPEG or PNG made then; they are served the same way.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from screenpop.daemon.customers.images import (INCOMING_FORMATS, MAX_INCOMING_BYTES, MAX_PIXELS, MAX_STORED_BYTES, MB,
                                               ImageRejected, load_image)
from screenpop.daemon.i18n import lazy_gettext
from screenpop.db import audit, models
from screenpop.db.database import private_dir
from screenpop.db.models import Customer

CHECK_BOX = (512, 512)  # a JPEG is checked by decoding it at a reduced scale (images.py: the decoded-pixel limit)
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}  # one per format of INCOMING_FORMATS
MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def original(path: Path, max_bytes: int = MAX_INCOMING_BYTES) -> tuple[bytes, str]:
    """The photo file's bytes as they came, after it decoded within every limit (daemon/customers/images.py), and
    the suffix of the format found in it. ImageRejected says why a file is refused (format, size, pixels, bomb,
    unreadable)."""
    with load_image(path, max_bytes, MAX_PIXELS, INCOMING_FORMATS, draft=CHECK_BOX) as image:
        suffix = SUFFIXES[image.format]
    data = path.read_bytes()
    if len(data) > max_bytes:  # the file grew after it was checked
        raise ImageRejected(lazy_gettext("file is larger than %(max_bytes)s MB", max_bytes=max_bytes // MB))
    return data, suffix


def served_format(file: BinaryIO) -> str | None:
    """The format to serve an open stored photo file as, from its header: a key of MIME_TYPES (and SUFFIXES), or
    None for anything else (a file put in the folder by hand may be anything). The file is left at its start."""
    try:
        if os.fstat(file.fileno()).st_size > MAX_STORED_BYTES:
            return None
        with Image.open(file) as image:
            return image.format if image.format in MIME_TYPES else None
    except Exception:  # Pillow raises many types on a file that is not an image
        return None
    finally:
        file.seek(0)


def file_name(customer_id: int, data: bytes, suffix: str) -> str:
    """The stored name: the customer's id and a hash of the content, so a changed photo gets a new name."""
    return f"{customer_id}-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"


def write_atomically(target: Path, data: bytes) -> None:
    """Write a file so a reader never sees half of it."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".photo-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def attach(customer: Customer, data: bytes, suffix: str, photo_dir: Path) -> str | None:
    """Store photo data (from original()) as the customer's photo, dropping the old file; its name, or None if
    unchanged."""
    name = file_name(customer.id, data, suffix)
    if customer.photo == name and (photo_dir / name).is_file():
        return None
    private_dir(photo_dir)
    write_atomically(photo_dir / name, data)
    Customer.update(photo=name, updated_at=models.utcnow()).where(Customer.id == customer.id).execute()
    audit.record("customer", customer.id, "changed", "photo", customer.id)
    if customer.photo and customer.photo != name and "/" not in customer.photo:
        (photo_dir / customer.photo).unlink(missing_ok=True)
    return name
