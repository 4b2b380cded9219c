"""Reading one image file safely: every failure is an :class:`ImageError` naming the file.

PIL opens files lazily, so truncation only shows when pixels are decoded;
:func:`load_image` decodes eagerly (``Image.load``) so that a broken file fails
here, with its name, rather than later inside a hasher.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

#: Formats a corpus may contain (PIL format names).
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")

#: Largest image accepted, in pixels: guards against decompression bombs
#: (a small file that decodes to gigabytes). 64 megapixels covers camera photos.
DEFAULT_MAX_PIXELS: int = 64_000_000


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: tuple[str, ...] = ACCEPTED_FORMATS,
    mode: str | None = "RGB",
) -> Image.Image:
    """Decode ``path`` fully, apply its EXIF orientation and convert it to ``mode``.

    Raises :class:`ImageError` (message starts with the file name) for a
    missing or empty file, a file PIL cannot identify, a format outside
    ``formats``, an image of more than ``max_pixels`` pixels (checked from the
    header, before decoding) and a truncated or corrupt pixel stream.
    ``mode=None`` keeps the decoded mode.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ImageError(f"{p}: cannot read file ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageError(f"{p}: file is empty (0 bytes); expected a {'/'.join(formats)} image")
    with warnings.catch_warnings():
        # PIL only warns between its own limit and twice that; make it an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(p) as im:
                if im.format not in formats:
                    raise ImageError(f"{p}: format {im.format} is not accepted; expected one of {', '.join(formats)}")
                width, height = im.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"{p}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
                        "(decompression-bomb guard; raise max_pixels to accept it)"
                    )
                im.load()
                oriented = ImageOps.exif_transpose(im)
                if mode is not None and oriented.mode != mode:
                    oriented = oriented.convert(mode)
                elif oriented is im:
                    oriented = im.copy()  # detach from the file handle closed below
                return oriented
        except ImageError:
            raise
        except UnidentifiedImageError as exc:
            raise ImageError(f"{p}: not an image PIL can identify; expected one of {', '.join(formats)}") from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"{p}: image dimensions exceed PIL's decompression-bomb limit ({exc})") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # PIL reports truncated or corrupt streams as OSError ("image file is truncated"),
            # SyntaxError (bad PNG chunks) or ValueError/EOFError in some decoders.
            raise ImageError(f"{p}: corrupt or truncated image data ({exc})") from exc
