"""What a submission's photos may be: pure checks, no database.

Uploaded files are recognised by their first bytes, never by the name or the Content-Type the
client claims: a file is accepted only when it starts like a JPEG, PNG, GIF or WebP image.
Photo addresses must be https (the pages that show them are served over https, and a plain
http image would be blocked as mixed content); they are stored, never fetched by the CRM.
"""

from urllib.parse import urlsplit

from django.utils.translation import gettext as _

MAX_IMAGES = 9
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_URL_LENGTH = 500

_SIGNATURES = [
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
]


def sniff_image_type(head: bytes) -> str | None:
    """The image type that a file starting with `head` (its first 16 bytes or more) is, or None."""
    for signature, content_type in _SIGNATURES:
        if head.startswith(signature):
            return content_type
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_file_problem(*, head: bytes, size: int) -> str | None:
    """Why an uploaded file cannot be a submission's photo, or None when it can."""
    if size > MAX_IMAGE_BYTES:
        return _("A photo may be at most %(mb)d MB.") % {"mb": MAX_IMAGE_BYTES // (1024 * 1024)}
    if size == 0 or sniff_image_type(head) is None:
        return _("Send a JPEG, PNG, GIF or WebP image.")
    return None


def image_url_problem(url: str) -> str | None:
    """Why an address cannot be a submission's photo, or None when it can."""
    if len(url) > MAX_URL_LENGTH:
        return _("An address may be at most %(max)d characters.") % {"max": MAX_URL_LENGTH}
    try:
        parts = urlsplit(url)
        # .port raises on a port that is not a number or out of range.
        host, _port = parts.hostname, parts.port
    except ValueError:
        return _("Give an https:// address of the photo.")
    if parts.scheme != "https" or not host or parts.username or parts.password:
        return _("Give an https:// address of the photo.")
    if any(char.isspace() or ord(char) < 32 for char in url):
        return _("Give an https:// address of the photo.")
    return None
