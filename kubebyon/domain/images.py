"""Avatar images: accepted only by decoding, bounded, and re-encoded before storage.

The format is whatever the bytes decode as (never the file name or declared type);
re-encoding from raw pixels drops EXIF, XMP, ICC and text chunks, and anything else a
crafted file could smuggle along.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_AVATAR_BYTES = 1024 * 1024
MAX_AVATAR_SIDE = 1024
AVATAR_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class AvatarProblem(ValueError):
    """Why an upload is refused; ``code`` names the rule for API clients."""

    code = "avatar_invalid"


class AvatarTooLarge(AvatarProblem):
    code = "avatar_too_large"

    def __init__(self) -> None:
        super().__init__("avatar must be at most 1 MiB")


class AvatarFormat(AvatarProblem):
    code = "avatar_unsupported_format"

    def __init__(self) -> None:
        super().__init__("avatar must be a PNG, JPEG or WebP image (checked by decoding it)")


class AvatarDimensions(AvatarProblem):
    code = "avatar_too_many_pixels"

    def __init__(self) -> None:
        side = MAX_AVATAR_SIDE
        super().__init__(f"avatar must be at most {side}×{side} pixels")


class AvatarCorrupt(AvatarProblem):
    code = "avatar_invalid"

    def __init__(self) -> None:
        super().__init__("avatar image could not be decoded (truncated or corrupt)")


def clean_avatar(data: bytes) -> tuple[bytes, str]:
    """(re-encoded bytes, content type), or raise an :class:`AvatarProblem`."""
    if len(data) > MAX_AVATAR_BYTES:
        raise AvatarTooLarge
    try:
        # Only these decoders are tried: no EPS/Ghostscript or other exotic parsers.
        with Image.open(io.BytesIO(data), formats=list(AVATAR_FORMATS)) as image:
            fmt = image.format or ""
            # The header gives the size before any pixel is decoded: bombs stop here.
            if image.width > MAX_AVATAR_SIDE or image.height > MAX_AVATAR_SIDE:
                raise AvatarDimensions
            image.load()
            pixels = ImageOps.exif_transpose(image)
    except AvatarProblem:
        raise
    except Image.DecompressionBombError:
        raise AvatarDimensions from None
    except UnidentifiedImageError:
        raise AvatarFormat from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise AvatarCorrupt from None
    return _reencode(pixels, fmt), AVATAR_FORMATS[fmt]


def _reencode(image: Image.Image, fmt: str) -> bytes:
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if image.mode not in ("RGB", "RGBA", "L"):  # palette, CMYK, 16-bit, ...
        image = image.convert("RGBA" if has_alpha else "RGB")
    # A fresh image from raw pixels carries no metadata at all.
    bare = Image.frombytes(image.mode, image.size, image.tobytes())
    out = io.BytesIO()
    if fmt == "JPEG":
        bare.save(out, "JPEG", quality=90)
    elif fmt == "WEBP":
        bare.save(out, "WEBP", quality=90)
    else:
        bare.save(out, "PNG")
    return out.getvalue()
