"""What a submission's photos may be: pure checks."""

import pytest

from campaigns.ugc.images import MAX_IMAGE_BYTES, image_file_problem, image_url_problem, sniff_image_type

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 12
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 "


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (b"GIF89a" + b"\x00" * 10, "image/gif"),
        (WEBP, "image/webp"),
        (b"%PDF-1.7", None),
        (b"<svg xmlns=", None),
        (b"RIFF\x10\x00\x00\x00WAVE", None),
        (b"", None),
    ],
)
def test_images_are_recognised_by_their_first_bytes(head, expected):
    assert sniff_image_type(head) == expected


def test_a_file_must_be_an_image_and_not_too_large():
    assert image_file_problem(head=PNG, size=1000) is None
    assert image_file_problem(head=PNG, size=MAX_IMAGE_BYTES) is None
    assert "5 MB" in image_file_problem(head=PNG, size=MAX_IMAGE_BYTES + 1)
    assert "JPEG" in image_file_problem(head=b"MZ\x90\x00", size=1000)
    assert image_file_problem(head=PNG, size=0) is not None


@pytest.mark.parametrize("url", ["https://cdn.example.com/a.jpg", "https://img.example.cn:8443/x/y.png?w=600"])
def test_https_addresses_are_accepted(url):
    assert image_url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example.com/a.jpg",
        "javascript:alert(1)",
        "https://",
        "https://user:pw@example.com/a.png",
        "https://example.com:99999/a.png",
        "https://exa mple.com/a.png",
        "ftp://example.com/a.png",
        "/media/a.png",
        "https://example.com/" + "a" * 600,
    ],
)
def test_other_addresses_are_refused(url):
    assert image_url_problem(url)
