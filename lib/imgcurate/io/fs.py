"""One place that turns a path or URL into a filesystem and an open file.

Local paths go through the local filesystem directly (no fsspec import cost on
the hot path); anything with a scheme (s3://, gs://, abfs://, dbfs:/, hf://,
file://) goes through fsspec, so every backend fsspec knows works here.
"""

from __future__ import annotations

import os
import re
from typing import IO

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:/")

#: Block size for remote reads: large enough that a sequential tar scan does few requests.
REMOTE_BLOCK_SIZE = 8 * 1024 * 1024


def has_scheme(path: str) -> bool:
    """True for URLs such as ``s3://b/k`` or ``dbfs:/x`` (but not ``C:\\`` or ``/tmp``)."""
    return bool(_SCHEME.match(path)) and not re.match(r"^[a-zA-Z]:[\\/]", path)


def is_local(path: str) -> bool:
    return not has_scheme(path) or path.startswith("file:/")


def local_path(path: str) -> str:
    """Strip a ``file://`` prefix; leave plain paths as they are."""
    if path.startswith("file://"):
        return path[len("file://") :]
    if path.startswith("file:/"):
        return path[len("file:") :]
    return path


def join(root: str, relative: str) -> str:
    """Join a dataset root and a relative shard path, for local paths and URLs alike."""
    if not root:
        return relative
    return root.rstrip("/") + "/" + relative.lstrip("/")


def get_fs(path: str):
    """Return ``(fsspec filesystem, path within it)`` for a URL."""
    from fsspec.core import url_to_fs

    return url_to_fs(path)


def open_binary(path: str, block_size: int = REMOTE_BLOCK_SIZE) -> IO[bytes]:
    """Open a shard for reading, locally or through fsspec."""
    if is_local(path):
        return open(local_path(path), "rb", buffering=1024 * 1024)
    fs, inner = get_fs(path)
    return fs.open(inner, "rb", block_size=block_size)


def size_of(path: str) -> int:
    if is_local(path):
        return os.path.getsize(local_path(path))
    fs, inner = get_fs(path)
    return int(fs.size(inner))


def exists(path: str) -> bool:
    if is_local(path):
        return os.path.exists(local_path(path))
    fs, inner = get_fs(path)
    return bool(fs.exists(inner))
