"""`kernel-builder mirror`: copy one version of a kernel from one hub to another (e.g. huggingface.co -> a private
`serve`, for air-gapped clusters), through the same client paths as download and upload.

Why download-then-upload rather than a git fetch: the source may be huggingface.co, where only the HTTP API is
available, and going through `upload` re-checks the tree and applies the same replace-only-these-variants rule.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .translate import translate
from .upload import check_repo_id, token_from_env, upload


def mirror(src_endpoint: str, dst_endpoint: str, repo_id: str, version: int, src_token=None, dst_token=None,
           dst_repo_id: str | None = None, variants=None, dry_run: bool = False, output_json=None) -> dict:
    """Copies build/ of branch v<version> of repo_id from src to dst (as dst_repo_id, default the same id).
    `variants` limits the copy to those variant names. Tokens default to HF_TOKEN / the saved login."""
    from huggingface_hub import snapshot_download

    check_repo_id(repo_id, "REPO")
    if dst_repo_id:
        check_repo_id(dst_repo_id, "--to-repo-id")
    src_endpoint, dst_endpoint = src_endpoint.rstrip("/"), dst_endpoint.rstrip("/")
    patterns = [f"build/{v}/*" for v in variants] if variants else ["build/*"]
    with tempfile.TemporaryDirectory(prefix="kb-mirror-") as tmp:
        with translate(src_endpoint, repo_id, f"download version {version}"):
            snapshot_download(repo_id, repo_type="kernel", revision=f"v{int(version)}", allow_patterns=patterns,
                              endpoint=src_endpoint, token=src_token or token_from_env(), local_dir=tmp,
                              cache_dir=Path(tmp) / ".hf-cache")
        build = Path(tmp) / "build"
        # provenance was judged when the source was uploaded; a mirror copies it as it is
        return upload(build, repo_id=dst_repo_id or repo_id, project=Path(tmp), dry_run=dry_run,
                      endpoint=dst_endpoint, output_json=output_json, allow_dirty=True, token=dst_token)


def run(args) -> int:
    from .. import settings

    mirror(args.src, args.dst, args.repo_id, args.version, src_token=settings.current().src_hf_token,
           dst_repo_id=args.to_repo_id, variants=args.variant, dry_run=args.dry_run, output_json=args.output_json)
    return 0
