"""Customer photo files: checked, shrunk, re-encoded and stored in the photo folder under a content-derived name.

`screenpop import photos` and the web page's upload both store photos this way, so the daemon serves either alike.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from screenpop.daemon.customers.images import INCOMING_FORMATS, MAX_INCOMING_BYTES, MAX_PIXELS, load_image
from screenpop.db import models
from screenpop.db.database import private_dir
from screenpop.db.models import Customer

BOX = (512, 512)


def shrink(path: Path, max_bytes: int = MAX_INCOMING_BYTES) -> tuple[bytes, str]:
    """The photo verified (daemon/customers/images.py) and re-encoded to fit BOX: JPEG, or PNG when it has transparency.

    ImageRejected says why a file is refused (format, size, pixels, bomb, unreadable)."""
    image = load_image(path, max_bytes, MAX_PIXELS, INCOMING_FORMATS, draft=BOX)
    image.thumbnail(BOX)
    out = io.BytesIO()
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image.convert("RGBA").save(out, "PNG", optimize=True)
        return out.getvalue(), ".png"
    image.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue(), ".jpg"


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
    """Store shrunk photo data as the customer's photo, dropping the old file; its name, or None if unchanged."""
    name = file_name(customer.id, data, suffix)
    if customer.photo == name and (photo_dir / name).is_file():
        return None
    private_dir(photo_dir)
    write_atomically(photo_dir / name, data)
    Customer.update(photo=name, updated_at=models.utcnow()).where(Customer.id == customer.id).execute()
    if customer.photo and customer.photo != name and "/" not in customer.photo:
        (photo_dir / customer.photo).unlink(missing_ok=True)
    return name
