"""img2dataset's per-shard parquet: every row it tried, including failed downloads.

img2dataset writes ``00012.parquet`` beside ``00012.tar``. The tar holds only
successes; the parquet holds one row per URL with its status. Scan joins it
on the key so that failed downloads stay visible as rows instead of silently
vanishing, and so that fields like the original size are queryable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgcurate.io import fs


@dataclass(frozen=True)
class SidecarRow:
    """The columns of an img2dataset parquet row that scan keeps."""

    url: str | None = None
    caption: str | None = None
    uid: str | None = None
    original_width: int | None = None
    original_height: int | None = None
    download_status: str | None = None
    download_error: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "caption": self.caption,
            "uid": self.uid,
            "original_width": self.original_width,
            "original_height": self.original_height,
            "download_status": self.download_status,
            "download_error": self.download_error,
        }


def sidecar_path(tar_url: str) -> str:
    """``.../00012.tar`` → ``.../00012.parquet``."""
    return (tar_url[: -len(".tar")] if tar_url.endswith(".tar") else tar_url) + ".parquet"


def read_sidecar(path: str) -> dict[str, SidecarRow]:
    """Read the sidecar into ``{key: SidecarRow}``; rows without a key are ignored."""
    import pyarrow.parquet as pq

    with fs.open_binary(path) as handle:
        table = pq.read_table(handle)
    columns = set(table.column_names)
    if "key" not in columns:
        raise ValueError("sidecar parquet has no 'key' column")
    records = table.to_pylist()
    return {
        str(record["key"]): _to_row(record, columns)
        for record in records
        if record.get("key") is not None
    }


def _to_row(record: dict[str, Any], columns: set[str]) -> SidecarRow:
    def text(name: str) -> str | None:
        value = record.get(name) if name in columns else None
        return None if value is None else str(value)

    def number(name: str) -> int | None:
        value = record.get(name) if name in columns else None
        try:
            return None if value is None else int(value)
        except (TypeError, ValueError):
            return None

    return SidecarRow(
        url=text("url"),
        caption=text("caption"),
        uid=text("uid"),
        original_width=number("original_width"),
        original_height=number("original_height"),
        download_status=text("status"),
        download_error=text("error_message"),
    )
