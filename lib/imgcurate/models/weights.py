"""Find the files a model needs: a local directory, a cache, or a download.

GPU clusters are often offline, so where weights come from must be predictable
and a missing file must say how to get it. Every file is looked up in this order:

1. ``--weights-dir DIR`` (or ``IMGCURATE_WEIGHTS_DIR``), laid out as
   ``DIR/<source>/<file>`` (``<source>`` is the Hugging Face repo id, as
   ``imgcurate models fetch --dest DIR`` writes it); a few files with distinctive
   published names are also accepted at ``DIR/<file>``;
2. the Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``), and imgcurate's own
   cache for the few files that are not hosted on the Hub;
3. a download, only when downloads are allowed and ``HF_HUB_OFFLINE`` is not set.

Whatever is still missing is reported in one error that names every file, where
it is published, and the command that fetches it on a machine with network access.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_WEIGHTS_DIR = "IMGCURATE_WEIGHTS_DIR"
ENV_CACHE_DIR = "IMGCURATE_CACHE"
_TRUE = {"1", "true", "yes", "on"}
_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class WeightFile:
    """One file a model needs, and every place it may come from.

    ``names`` are the published file names, preferred first (a download fetches
    the first one the source has). ``aliases`` are other names accepted locally,
    such as the original ``.pth`` of a model whose Hub copy is safetensors.
    """

    role: str
    source: str
    names: tuple[str, ...]
    hf_repo: str | None = None
    url: str | None = None
    archive_member: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def relpath(self) -> str:
        """Where ``models fetch --dest DIR`` puts the file, relative to DIR."""
        return f"{self.source}/{self.names[0]}"

    def origin(self) -> str:
        if self.hf_repo:
            return f"huggingface.co/{self.hf_repo}"
        if self.url and self.archive_member:
            return f"{self.url} (member {self.archive_member})"
        return self.url or "no public source"


@dataclass(frozen=True)
class WeightsPolicy:
    """How a run may obtain weights; small and picklable, so it travels to executors."""

    weights_dir: str | None = None
    random: bool = False
    allow_download: bool = True

    @classmethod
    def from_args(
        cls, weights_dir: str | None = None, random: bool = False, allow_download: bool = True
    ) -> WeightsPolicy:
        """Fill ``weights_dir`` from ``IMGCURATE_WEIGHTS_DIR`` when the flag is absent."""
        return cls(weights_dir or os.environ.get(ENV_WEIGHTS_DIR) or None, random, allow_download)


class MissingWeightsError(FileNotFoundError):
    """Weights are needed but not found, and cannot be downloaded here."""

    def __init__(self, missing: Sequence[WeightFile], searched: Sequence[str], fetch_command: str):
        self.missing = list(missing)
        lines = ["model weights not found:"]
        lines += [f"  - {f.role}: {f.relpath}  (from {f.origin()})" for f in self.missing]
        lines.append("looked in: " + "; ".join(searched))
        lines.append("on a machine with network access, run:")
        lines.append(f"  {fetch_command}")
        lines.append(f"then copy DIR here and pass --weights-dir DIR (or set {ENV_WEIGHTS_DIR}).")
        super().__init__("\n".join(lines))


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (the switch every Hugging Face tool honours) is set."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def own_cache_dir() -> Path:
    """Where files that are not on the Hub are kept once downloaded."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "imgcurate"


def find_local(weight: WeightFile, weights_dir: str | None) -> Path | None:
    """Steps 1 and 2: the weights directory, then the caches. No network."""
    if weights_dir:
        for candidate in _dir_candidates(weight, Path(weights_dir).expanduser()):
            if candidate.is_file():
                return candidate
    if weight.hf_repo:
        found = _hf_cached(weight)
        if found:
            return found
    for candidate in _dir_candidates(weight, own_cache_dir()):
        if candidate.is_file():
            return candidate
    return None


def _dir_candidates(weight: WeightFile, root: Path) -> Iterable[Path]:
    for name in weight.names + weight.aliases:
        yield root / weight.source / name
    for name in weight.aliases:
        yield root / name


def _hf_cached(weight: WeightFile) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for name in weight.names:
        found = try_to_load_from_cache(weight.hf_repo, name, cache_dir=hf_cache_dir())
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def download(weight: WeightFile, dest: str | None = None) -> Path:
    """Step 3: fetch ``weight`` into ``dest/<source>/`` (or into the caches when ``dest`` is None).

    Raises ``OSError`` with the reason when no published name can be fetched.
    """
    if is_offline():
        raise OSError("HF_HUB_OFFLINE is set: downloads are disabled")
    if weight.hf_repo:
        return _download_hf(weight, dest)
    if weight.url:
        return _download_url(weight, Path(dest) if dest else own_cache_dir())
    raise OSError(f"{weight.role}: no public source to download {weight.names[0]} from")


def _download_hf(weight: WeightFile, dest: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    errors = []
    for name in weight.names:
        try:
            if dest:
                local_dir = Path(dest) / weight.source
                return Path(hf_hub_download(weight.hf_repo, name, local_dir=local_dir))
            return Path(hf_hub_download(weight.hf_repo, name, cache_dir=hf_cache_dir()))
        except Exception as error:  # the Hub client raises many types; try the next name
            errors.append(f"{name}: {type(error).__name__}: {error}")
    raise OSError(f"could not download from {weight.hf_repo}: " + "; ".join(errors))


def _download_url(weight: WeightFile, root: Path) -> Path:
    target = root / weight.source / weight.names[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        fetched = Path(scratch) / "download"
        with urllib.request.urlopen(weight.url, timeout=60) as response, open(fetched, "wb") as out:
            shutil.copyfileobj(response, out)
        if weight.archive_member:
            fetched = _extract(fetched, weight.archive_member, Path(scratch))
        os.replace(fetched, target)
    return target


def _extract(archive: Path, member: str, scratch: Path) -> Path:
    if not zipfile.is_zipfile(archive):
        raise OSError(f"downloaded file is not a zip archive (expected {member} inside)")
    with zipfile.ZipFile(archive) as bundle:
        matches = [n for n in bundle.namelist() if os.path.basename(n) == member]
        if not matches:
            raise OSError(f"{archive.name} has no member {member}")
        out = scratch / member
        with bundle.open(matches[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return out


def resolve(
    files: Sequence[WeightFile], policy: WeightsPolicy, fetch_command: str
) -> dict[WeightFile, Path]:
    """Find every file, downloading when allowed; one error lists all that are missing."""
    found: dict[WeightFile, Path] = {}
    missing: list[WeightFile] = []
    for weight in files:
        path = find_local(weight, policy.weights_dir)
        if path is None and policy.allow_download and not is_offline():
            try:
                path = download(weight)
            except OSError:
                path = None
        if path is None:
            missing.append(weight)
        else:
            found[weight] = path
    if missing:
        raise MissingWeightsError(missing, searched_places(policy), fetch_command)
    return found


def searched_places(policy: WeightsPolicy) -> list[str]:
    places = []
    if policy.weights_dir:
        places.append(f"--weights-dir {policy.weights_dir}")
    else:
        places.append(f"no --weights-dir (nor {ENV_WEIGHTS_DIR})")
    places.append(f"the Hugging Face cache {hf_cache_dir()}")
    places.append(f"the imgcurate cache {own_cache_dir()}")
    if is_offline():
        places.append("no download (HF_HUB_OFFLINE is set)")
    elif not policy.allow_download:
        places.append("no download (downloads not allowed)")
    else:
        places.append("a download (failed)")
    return places


def provenance(path: Path) -> str:
    """``<file name>@sha256:<first 12 hex>``: names the exact bytes that produced a score.

    Files in the Hugging Face cache are stored under their SHA-256, which is read
    from the path instead of hashing gigabytes again.
    """
    real = Path(os.path.realpath(path))
    digest = real.name if _SHA256_NAME.match(real.name) else _sha256(str(real), *_stamp(real))
    return f"{Path(path).name}@sha256:{digest[:12]}"


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """Hash once per file version per process (size and mtime are part of the key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
