"""Deterministic tar headers, exact layout sizes and safe member names."""

from __future__ import annotations

import io
import tarfile

import pytest

from imgcurate.io.tarindex import is_unsafe_key, split_member_name
from imgcurate.io.tarwriter import (
    BLOCK,
    END_OF_ARCHIVE,
    layout,
    member_header,
    member_span,
    safe_key,
    sample_span,
)


def build(members: list[tuple[str, bytes]]) -> bytes:
    """A tar written from the layout, as the reshard writer does it."""
    slots, total = layout([(name, len(data)) for name, data in members])
    out = bytearray(total)
    for slot, (_, data) in zip(slots, members, strict=True):
        assert slot.header == member_header(slot.name, slot.size)
        out[slot.header_offset : slot.data_offset] = slot.header
        out[slot.data_offset : slot.data_offset + len(data)] = data
    return bytes(out)


def test_header_fields_are_fixed_and_readable():
    data = build([("000123.jpg", b"\xff\xd8jpeg"), ("000123.txt", b"a caption")])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["000123.jpg", "000123.txt"]
        for member in members:
            assert (member.mtime, member.uid, member.gid, member.mode) == (0, 0, 0, 0o444)
            assert (member.uname, member.gname) == ("", "")
            assert member.isfile()
        assert tar.extractfile(members[1]).read() == b"a caption"
    assert data.endswith(END_OF_ARCHIVE)


def test_same_member_same_bytes():
    assert member_header("k.jpg", 10) == member_header("k.jpg", 10)
    assert build([("a.txt", b"x")]) == build([("a.txt", b"x")])
    assert member_header("k.jpg", 10) != member_header("k.jpg", 11)


@pytest.mark.parametrize(
    ("name", "pax"),
    [
        ("short.jpg", False),
        ("d" * 90 + "/" + "k" * 90 + ".jpg", False),  # ustar prefix + name split
        ("k" * 120 + ".jpg", True),  # no split possible
        ("caf\u00e9.txt", True),  # non-ASCII names go in a PAX record, as UTF-8
    ],
)
def test_ustar_when_it_fits_else_pax(name, pax):
    header = member_header(name, 5)
    assert (len(header) > BLOCK) == pax
    with tarfile.open(fileobj=io.BytesIO(build([(name, b"12345")]))) as tar:
        (member,) = tar.getmembers()
        assert member.name == name
        assert tar.extractfile(member).read() == b"12345"


def test_spans_add_up_to_the_archive_size():
    members = [("x.jpg", b"a" * 511), ("x.txt", b"b" * 512), ("x.json", b""), ("y" * 150, b"c")]
    data = build(members)
    assert len(data) == sum(member_span(n, len(d)) for n, d in members) + len(END_OF_ARCHIVE)
    assert sample_span("x", {"jpg": 511, "txt": 512, "json": 0}) == 3 * BLOCK + 2 * BLOCK


def test_huge_sizes_use_pax():
    header = member_header("big.bin", 9 * 2**30)
    info = tarfile.TarInfo.frombuf(header[-BLOCK:], "utf-8", "strict")
    assert len(header) > BLOCK and info.name == "big.bin"


@pytest.mark.parametrize(
    "key",
    ["../escape", "/abs/path", "a/../../b", "C:evil", "a\\..\\b", "dir/./k", "x\x00y", "", "a//b"],
)
def test_unsafe_keys_are_flattened(key):
    safe = safe_key(key)
    assert safe and not is_unsafe_key(safe)
    assert ".." not in safe and not safe.startswith("/") and "\\" not in safe
    assert split_member_name(f"{safe}.jpg") == (safe, "jpg")
    assert safe_key(key) == safe  # deterministic


@pytest.mark.parametrize("key", ["000010005", "sample_01", "dir/sub/000001", "a-b~c"])
def test_safe_keys_are_kept(key):
    assert safe_key(key) == key


def test_occurrence_mark_never_survives():
    assert "#" not in safe_key("a#1") and "#" not in safe_key("../a#1")


def test_fast_headers_equal_the_tarfile_ones():
    """The template path for short ASCII names writes exactly what tarfile writes."""
    import random

    from imgcurate.io.tarwriter import _tarfile_header

    rng = random.Random(0)
    alphabet = "abcXYZ019_-#/~ "
    cases = [("a", 0), ("k" * 100, 1), ("x.jpg", 8**11 - 1), ("d/e.f.json", 512)]
    cases += [
        ("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 100))), rng.randint(0, 10**9))
        for _ in range(200)
    ]
    for name, size in cases:
        assert member_header(name, size) == _tarfile_header(name, size), (name, size)
