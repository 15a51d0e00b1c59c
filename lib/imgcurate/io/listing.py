"""Turn what a user types after ``--input`` into a sorted list of shards.

Accepted forms:

* a folder (local or URL): every ``*.tar`` below it, recursively;
* a glob: ``data/*.tar``, ``s3://bucket/laion/**/*.tar``;
* a brace range or list, the WebDataset convention: ``data/{00000..00099}.tar``,
  ``data/{a,b}.tar`` (several braces multiply);
* a manifest: a text file of paths, one per line (``#`` comments allowed),
  given as ``@manifest.txt`` or any path ending in ``.txt``/``.lst``;
* a single ``.tar`` file.

Every shard is recorded relative to a dataset root, so sample ids stay the
same when a bucket is mounted elsewhere. The root is the folder given, the
part of a glob or brace pattern before its first wildcard, or the common
parent of a manifest's entries; ``root=`` overrides it.
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
from dataclasses import dataclass

from imgcurate.io import fs

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_WILDCARDS = ("*", "?", "[", "{")


class ListingError(ValueError):
    """The input pattern matched nothing or is malformed."""


@dataclass(frozen=True)
class ShardListing:
    """Shards found for one input: a root and paths relative to it."""

    root: str
    shards: tuple[str, ...]

    def url(self, shard: str) -> str:
        return fs.join(self.root, shard)


def list_shards(pattern: str, root: str | None = None) -> ShardListing:
    """List shards for ``pattern``; raise :class:`ListingError` when nothing matches."""
    pattern = pattern.strip()
    if not pattern:
        raise ListingError("empty --input: give a folder, glob, brace range or manifest")
    if pattern.startswith("@") or pattern.endswith((".txt", ".lst")):
        paths = _read_manifest(pattern.lstrip("@"))
        base = _common_parent(paths)
    elif any(ch in pattern for ch in _WILDCARDS):
        paths = _expand_pattern(pattern)
        base = _static_prefix_dir(pattern)
    elif _is_dir(pattern):
        base = pattern.rstrip("/")
        paths = _walk_tars(base)
    else:
        if not fs.exists(pattern):
            raise ListingError(f"--input {pattern!r} does not exist")
        paths = [pattern]
        base = posixpath.dirname(pattern.rstrip("/"))
    if not paths:
        raise ListingError(f"--input {pattern!r} matched no shards")
    base = _absolute(root.rstrip("/") if root else base)
    return ShardListing(root=base, shards=tuple(sorted({_relative(p, base) for p in paths})))


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{000..010}`` ranges (zero padding kept) and ``{a,b}`` lists."""
    match = _BRACE.search(pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out: list[str] = []
    for choice in _brace_choices(match.group(1)):
        out.extend(expand_braces(head + choice + tail))
    return out


def _brace_choices(body: str) -> list[str]:
    numeric = _RANGE.match(body)
    if numeric:
        start_text, end_text = numeric.groups()
        width = len(start_text) if start_text.startswith("0") else 0
        start, end = int(start_text), int(end_text)
        step = 1 if end >= start else -1
        return [str(i).zfill(width) for i in range(start, end + step, step)]
    return body.split(",")


def _expand_pattern(pattern: str) -> list[str]:
    out: list[str] = []
    missing: list[str] = []
    for item in expand_braces(pattern):
        if any(ch in item for ch in "*?["):
            out.extend(_glob(item))
        elif fs.exists(item):
            out.append(item)
        else:
            missing.append(item)
    if missing:
        shown = ", ".join(posixpath.basename(m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ListingError(
            f"{len(missing)} shard(s) named by {pattern!r} do not exist: {shown}{more}"
        )
    return out


def _glob(pattern: str) -> list[str]:
    if fs.is_local(pattern):
        local = fs.local_path(pattern)
        return [p for p in glob.glob(local, recursive=True) if os.path.isfile(p)]
    filesystem, inner = fs.get_fs(pattern)
    protocol = pattern.split("://", 1)[0] if "://" in pattern else pattern.split(":/", 1)[0]
    return [_with_protocol(protocol, p) for p in filesystem.glob(inner)]


def _walk_tars(folder: str) -> list[str]:
    if fs.is_local(folder):
        local = fs.local_path(folder)
        found = []
        for dirpath, dirnames, filenames in os.walk(local):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
            found.extend(os.path.join(dirpath, f) for f in filenames if f.endswith(".tar"))
        return found
    return _glob(folder.rstrip("/") + "/**/*.tar")


def _read_manifest(path: str) -> list[str]:
    if not fs.exists(path):
        raise ListingError(f"manifest {path!r} does not exist")
    with fs.open_binary(path) as handle:
        lines = handle.read().decode("utf-8").splitlines()
    parent = posixpath.dirname(path)
    paths = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if not fs.has_scheme(entry) and not entry.startswith("/"):
            entry = fs.join(parent, entry) if parent else entry
        paths.append(entry)
    return paths


def _is_dir(path: str) -> bool:
    if fs.is_local(path):
        return os.path.isdir(fs.local_path(path))
    filesystem, inner = fs.get_fs(path)
    return bool(filesystem.isdir(inner))


def _static_prefix_dir(pattern: str) -> str:
    cut = min(pattern.index(ch) for ch in _WILDCARDS if ch in pattern)
    return posixpath.dirname(pattern[:cut])


def _common_parent(paths: list[str]) -> str:
    if not paths:
        return ""
    parents = [posixpath.dirname(p) for p in paths]
    common = parents[0]
    for parent in parents[1:]:
        while common and not (parent == common or parent.startswith(common.rstrip("/") + "/")):
            common = posixpath.dirname(common) if common not in ("/", "") else ""
    return common


def _relative(path: str, base: str) -> str:
    if not base:
        return path
    prefix = base.rstrip("/") + "/"
    path_cmp, prefix_cmp = _strip_scheme(path), _strip_scheme(prefix)
    if path_cmp.startswith(prefix_cmp):
        return path_cmp[len(prefix_cmp) :]
    raise ListingError(f"shard {path!r} is not under the dataset root {base!r}; pass --root")


def _absolute(base: str) -> str:
    if fs.has_scheme(base) and not base.startswith("file:"):
        return base
    return os.path.abspath(fs.local_path(base) or ".")


def _strip_scheme(path: str) -> str:
    if path.startswith("file://"):
        return path[len("file://") :]
    if fs.is_local(path):
        return os.path.abspath(path) + ("/" if path.endswith("/") else "")
    return path


def _with_protocol(protocol: str, path: str) -> str:
    if "://" in path or path.startswith(protocol + ":"):
        return path
    separator = ":/" if protocol == "dbfs" else "://"
    return f"{protocol}{separator}{path.lstrip('/')}" if separator == "://" else f"dbfs:/{path}"
