import hashlib
import io

import pytest

from ketch.errors import DigestMismatchError, InvalidInputError
from ketch.oci import Digest, VerifyingReader, copy_verified


def test_parse_and_compute():
    data = b"hello"
    d = Digest.of(data)
    assert str(d) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert Digest.parse(str(d)) == d
    d512 = Digest.of(data, "sha512")
    assert Digest.parse(str(d512)).algorithm == "sha512"


@pytest.mark.parametrize("text", ["sha256:" + "A" * 64, "sha256:abc", "md5:" + "a" * 32, "sha256" + "a" * 64,
                                  "sha512:" + "a" * 64, "sha256:" + "g" * 64, "sha256:../../etc/passwd"])
def test_invalid_digests(text):
    with pytest.raises(InvalidInputError):
        Digest.parse(text)


def test_verifying_reader_accepts_good_content():
    data = b"x" * 100000
    out = io.BytesIO()
    assert copy_verified(io.BytesIO(data), out, Digest.of(data), len(data), chunk_size=4096) == len(data)
    assert out.getvalue() == data


@pytest.mark.parametrize("content, size, message", [
    (b"evil", None, "digest mismatch"),
    (b"good", 3, "more data than"),
    (b"good", 10, "got 4 bytes, expected 10"),
])
def test_verifying_reader_refuses_bad_content(content, size, message):
    reader = VerifyingReader(io.BytesIO(content), Digest.of(b"good"), size)
    with pytest.raises(DigestMismatchError, match=message):
        while reader.read(2):
            pass
    assert not reader.verified


def test_sha512_verification():
    data = b"content"
    reader = VerifyingReader(io.BytesIO(data), Digest.of(data, "sha512"), len(data))
    assert reader.read() == data
    assert reader.read() == b""
    assert reader.verified
