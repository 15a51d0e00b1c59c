"""Shard listing: folders, globs, brace ranges, manifests, roots."""

from __future__ import annotations

import pytest

from imgcurate.io.listing import ListingError, expand_braces, list_shards


@pytest.fixture()
def tree(tmp_path):
    for name in ("00000.tar", "00001.tar", "00002.tar", "sub/00003.tar", "notes.txt"):
        path = tmp_path / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "data" / "_tmp").mkdir()
    (tmp_path / "data" / "_tmp" / "hidden.tar").write_bytes(b"x")
    return tmp_path / "data"


def test_brace_ranges_keep_zero_padding_and_lists():
    assert expand_braces("d/{00008..00011}.tar") == [f"d/{i:05d}.tar" for i in range(8, 12)]
    assert expand_braces("{a,b}/{0..1}.tar") == ["a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_folder_lists_tars_recursively_relative_to_it(tree):
    listing = list_shards(str(tree))
    assert listing.root == str(tree)
    assert listing.shards == ("00000.tar", "00001.tar", "00002.tar", "sub/00003.tar")
    assert listing.url("sub/00003.tar") == str(tree / "sub" / "00003.tar")


def test_glob_and_brace_patterns(tree):
    assert list_shards(f"{tree}/*.tar").shards == ("00000.tar", "00001.tar", "00002.tar")
    assert list_shards(f"{tree}/{{00001..00002}}.tar").shards == ("00001.tar", "00002.tar")
    assert list_shards(f"{tree}/**/*.tar").shards[-1] == "sub/00003.tar"


def test_brace_naming_a_missing_shard_fails_with_its_name(tree):
    with pytest.raises(ListingError, match="00007.tar"):
        list_shards(f"{tree}/{{00000..00007}}.tar")


def test_manifest_relative_and_absolute_entries(tree, tmp_path):
    manifest = tree / "manifest.txt"
    manifest.write_text(f"# shards\n00000.tar\n\n{tree}/sub/00003.tar\n")
    listing = list_shards(str(manifest))
    assert listing.root == str(tree)
    assert listing.shards == ("00000.tar", "sub/00003.tar")
    assert list_shards("@" + str(manifest)).shards == listing.shards


def test_explicit_root_and_single_file(tree):
    listing = list_shards(str(tree / "sub" / "00003.tar"), root=str(tree))
    assert listing.shards == ("sub/00003.tar",)
    with pytest.raises(ListingError, match="not under the dataset root"):
        list_shards(str(tree / "00000.tar"), root=str(tree / "sub"))


def test_nothing_matched_is_a_clear_error(tmp_path):
    with pytest.raises(ListingError, match="matched no shards"):
        list_shards(f"{tmp_path}/*.tar")
    with pytest.raises(ListingError, match="does not exist"):
        list_shards(str(tmp_path / "nope"))


def test_fsspec_urls_are_listed(tree):
    listing = list_shards(f"file://{tree}/*.tar")
    assert listing.shards == ("00000.tar", "00001.tar", "00002.tar")
    memory = list_shards("memory://bucket/*.tar") if _memory_shards() else None
    assert memory is not None and memory.root == "memory://bucket"
    assert memory.shards == ("a.tar", "b.tar")


def _memory_shards() -> bool:
    import fsspec

    fs = fsspec.filesystem("memory")
    for name in ("a.tar", "b.tar"):
        with fs.open(f"/bucket/{name}", "wb") as handle:
            handle.write(b"x")
    return True
