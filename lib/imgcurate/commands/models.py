"""``imgcurate models list|fetch``: which weight files a run needs, and getting them.

GPU clusters are often offline. ``list`` shows, for a model and heads, each file,
where it is published and where it was found here; ``fetch`` downloads them on a
machine with network access into a folder that is then copied to the cluster
and passed as ``--weights-dir``.
"""

from __future__ import annotations

import argparse
import sys

from imgcurate.models.catalog import DEFAULT_MODEL, HEAD_NAMES


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list models and heads, fetch their weights",
        description="Show the weight files a model and its heads need, or download them.",
    )
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="each file needed, its source, and where it is found")
    add_model_args(listing)
    listing.add_argument(
        "--weights-dir",
        default=None,
        metavar="DIR",
        help="folder of weight files (default: $IMGCURATE_WEIGHTS_DIR)",
    )
    fetch = actions.add_parser("fetch", help="download the files into DIR (needs network)")
    add_model_args(fetch)
    fetch.add_argument("--dest", required=True, metavar="DIR", help="folder to download into")
    parser.set_defaults(run=run)
    return parser


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--heads``, shared with ``embed``."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="openclip:ARCH/PRETRAINED, timm:NAME or custom:package.module:factory "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--heads",
        type=parse_heads,
        default=None,
        help=f"comma-separated subset of {','.join(HEAD_NAMES)} "
        "(default: every head that fits the model)",
    )


def parse_heads(text: str) -> tuple[str, ...]:
    heads = tuple(h.strip() for h in text.split(",") if h.strip())
    unknown = [h for h in heads if h not in HEAD_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown head(s) {', '.join(unknown)}; choose from {', '.join(HEAD_NAMES)}"
        )
    return heads


def run(args: argparse.Namespace) -> int:
    from imgcurate.models.bundle import ModelSpec, requirements

    spec = ModelSpec(args.model, args.heads, getattr(args, "weights_dir", None))
    needs = requirements(spec)
    if args.models_command == "fetch":
        return _fetch(needs, args.dest)
    return _list(needs, spec)


def _list(needs, spec) -> int:
    from imgcurate.models.weights import find_local

    print(f"model      {needs.model}  ({needs.dim}-d vectors, text tower: {_yes(needs.has_text)})")
    print(f"heads      {', '.join(needs.heads) or 'none fit this model'}")
    if needs.model.kind == "custom":
        print("files      a custom factory finds its own weights")
    missing = 0
    for weight in needs.files:
        found = find_local(weight, spec.policy.weights_dir)
        missing += found is None
        print(f"{weight.role:<10} {weight.relpath}")
        print(f"{'':<10} from  {weight.origin()}")
        print(f"{'':<10} found {found}" if found else f"{'':<10} MISSING")
    if "clip_score" in needs.heads:
        print("clip_score needs no file (it uses the model's text tower)")
    if missing:
        print(f"{missing} file(s) missing; on a machine with network access run:")
        print(f"  {needs.fetch_command}")
    return 0


def _fetch(needs, dest: str) -> int:
    from imgcurate.models.weights import download, is_offline

    if is_offline():
        print(
            "imgcurate models fetch: error: HF_HUB_OFFLINE is set, so nothing can be "
            "downloaded here. Run this command on a machine with network access, copy "
            f"{dest} to this one and pass --weights-dir {dest}.",
            file=sys.stderr,
        )
        return 2
    failures = 0
    for weight in needs.files:
        try:
            print(f"{weight.role:<10} {download(weight, dest)}")
        except OSError as error:
            failures += 1
            print(f"imgcurate models fetch: {weight.role}: {error}", file=sys.stderr)
    if not needs.files:
        print("nothing to fetch: a custom factory finds its own weights")
    if failures:
        return 1
    print(f"done; pass --weights-dir {dest} (or set IMGCURATE_WEIGHTS_DIR) where you run embed")
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
