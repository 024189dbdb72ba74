"""`kernel-builder upload BUILD_DIR`: publish built variants to a kernel hub (huggingface.co or `serve`).

Layout on the hub (CONTRACT §6): version N's variants live under `build/<variant>/` on branch `vN`, the card is
`README.md` on `main`. Only the variants being uploaded are replaced: stale files inside *their* folders are
deleted in the same commit, other variants' folders are never touched, so several hosts can each upload the
variants they built.

Why one commit, whatever the size: the loader reads a branch as it is. An upload split over several commits
and interrupted between them leaves a branch holding an old `metadata.json` beside new code, which loads.
With one `create_commit` the branch moves once, from the old tree to the new one (huggingface.co takes large
files through LFS/xet before that commit; `serve` takes the whole body, up to its --max-body-size).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings
from ..errors import CheckFailed, ConfigError, HubError, UsageError
from .translate import translate

DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass
class Plan:
    repo_id: str
    branch: str
    version: int
    variants: dict[str, Path]  # name -> local directory
    files: dict[str, Path] = field(default_factory=dict)  # path in repo -> local file
    deletes: list[str] = field(default_factory=list)  # paths in repo
    remote_variants: list[str] = field(default_factory=list)


def variant_dirs(build_dir: Path) -> dict[str, Path]:
    """BUILD_DIR may be a directory of variants, a project holding build/, or one variant directory."""
    build_dir = Path(build_dir)
    if (build_dir / "metadata.json").is_file():
        return {build_dir.name: build_dir}
    if (build_dir / "build").is_dir():
        build_dir = build_dir / "build"
    if not build_dir.is_dir():
        raise UsageError(f"{build_dir}: no such directory")
    found = {p.name: p for p in sorted(build_dir.iterdir()) if (p / "metadata.json").is_file()}
    if not found:
        raise UsageError(f"{build_dir}: no variant directories (with metadata.json) to upload")
    return found


def _local_files(variant: Path) -> dict[str, Path]:
    """Files of one variant, keyed by their path in the repo; bytecode caches are build debris, never uploaded."""
    out = {}
    for p in sorted(variant.rglob("*")):
        rel = p.relative_to(variant)
        if p.is_file() and not _debris(rel):
            out[f"build/{variant.name}/{rel.as_posix()}"] = p
    return out


def _debris(p: Path) -> bool:
    return "__pycache__" in p.parts or p.suffix in (".pyc", ".pyo")


def _check(variants: dict[str, Path]) -> None:
    """`kernel-builder check` on each variant before anything is sent: layout, metadata, digest and, where
    kernel-abi-check is installed, abi3 + manylinux_2_28 (a non-portable .so must not be published). The
    import check is left out: the uploading host often cannot load the variants (another torch, CUDA)."""
    from importlib.util import find_spec

    from ..build.check import check_tree

    abi = find_spec("kernel_abi_check") is not None
    if not abi:
        print("note: kernel-abi-check is not installed: abi3/manylinux_2_28 not checked before upload")
    for d in variants.values():
        check_tree(d, import_check=False, abi_check=abi)  # raises CheckFailed


def _metadata(variants: dict[str, Path]) -> dict[str, dict]:
    out = {}
    for name, d in variants.items():
        try:
            out[name] = json.loads((d / "metadata.json").read_text())
        except (OSError, ValueError) as e:
            raise CheckFailed(f"{d / 'metadata.json'}: unreadable: {e}") from None
    return out


def _version(metas: dict[str, dict]) -> int:
    versions = {name: m.get("version") for name, m in metas.items()}
    distinct = set(versions.values())
    if len(distinct) != 1:
        detail = ", ".join(f"{n}={v}" for n, v in sorted(versions.items()))
        raise UsageError(f"the variants disagree on the kernel version ({detail}); upload one version at a time")
    (v,) = distinct
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise UsageError(f"metadata.json version is {v!r}; set [general] version = N in build.toml and rebuild")
    return v


REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def check_repo_id(repo_id: str, what: str = "--repo-id") -> str:
    """`org/name` as the Hub spells it, judged here so a bad id is one line before any network call."""
    if not REPO_ID_RE.fullmatch(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        shown = repo_id if len(repo_id) <= 200 else repo_id[:200] + f"... ({len(repo_id)} characters)"
        raise UsageError(f"{what}: {shown!r} is not a repo id (org/name: letters, digits, '-', '_', '.'; no '..'; "
                         "at most 96 characters each)")
    return repo_id


def _repo_id(repo_id: str | None, project: Path) -> str:
    if repo_id:
        return check_repo_id(repo_id)
    from ..project.config import load_project

    try:
        hub_id = load_project(project).general.hub.repo_id
    except ConfigError as e:
        raise UsageError(f"no --repo-id given, and no repo id from the project: {e}") from None
    if not hub_id:
        raise UsageError(f"no --repo-id given and {project}/build.toml has no [general.hub] repo-id")
    return check_repo_id(hub_id, f"{project}/build.toml: [general.hub] repo-id")


def token_from_env() -> str | None:
    """HF_TOKEN, else the token saved by `hf auth login`. Returned to pass on, never printed."""
    from huggingface_hub import get_token

    return settings.current().hf_token or get_token()


def _exports(variants: dict[str, Path]) -> tuple[list[str], list[str]]:
    """`__all__` of the package and the classes of its `layers` module, read with ast (nothing is imported)."""
    def names(file: Path, want_all: bool) -> list[str]:
        try:
            tree = ast.parse(file.read_text())
        except (OSError, SyntaxError, ValueError):
            return []
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                try:
                    return [str(x) for x in ast.literal_eval(node.value)]
                except ValueError:
                    break
        return [] if want_all else [n.name for n in tree.body if isinstance(n, ast.ClassDef)]

    functions, layers = [], []
    for d in variants.values():
        functions = functions or names(d / "__init__.py", True)
        for lf in (d / "layers.py", d / "layers" / "__init__.py"):
            if lf.is_file():
                layers = layers or names(lf, False)
    return functions, layers


def render_card(plan: Plan, metas: dict[str, dict]) -> str:
    from ..build.render import render

    meta = next(iter(metas.values()))
    functions, layers = _exports(plan.variants)
    layers = [n for n in layers if not n.startswith("_")]
    functions = [f for f in functions if f != "layers"]
    name = meta.get("name") or plan.repo_id.split("/")[1]
    return render("card.md.j2", repo_id=plan.repo_id, name=name, module=name.replace("-", "_"),
                  license=meta.get("license") or "other", version=plan.version, branch=plan.branch,
                  functions=functions, layers=layers,
                  variants=sorted(set(plan.variants) | set(plan.remote_variants)))


def _remote_files(api, plan: Plan) -> None:
    """Fills plan.deletes (stale files in the uploaded variants' folders) and plan.remote_variants."""
    from huggingface_hub import RepoFile
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        top = list(api.list_repo_tree(plan.repo_id, path_in_repo="build", revision=plan.branch, repo_type="kernel"))
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
        return  # a new repo or branch: nothing stale
    plan.remote_variants = sorted(e.path.split("/", 1)[1] for e in top if not isinstance(e, RepoFile))
    for name in plan.variants:
        if name not in plan.remote_variants:
            continue
        for e in api.list_repo_tree(plan.repo_id, path_in_repo=f"build/{name}", revision=plan.branch,
                                    repo_type="kernel", recursive=True):
            if isinstance(e, RepoFile) and e.path not in plan.files:
                plan.deletes.append(e.path)


def _operations(plan: Plan) -> list:
    """Every deletion and addition of the upload: they go to the hub as one commit (module docstring)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    ops = [CommitOperationDelete(p) for p in plan.deletes]
    ops += [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(local))
            for path, local in sorted(plan.files.items())]
    return ops


def upload(build_dir, repo_id=None, project=None, branch=None, private=False, create_pr=False, dry_run=False,
           endpoint=None, output_json=None, allow_dirty=False, token=None) -> dict:
    """Uploads the variants under build_dir; returns (and writes to output_json) a summary of what changed.
    `token` defaults to HF_TOKEN / the saved login (see token_from_env)."""
    from huggingface_hub import HfApi

    build_dir = Path(build_dir)
    variants = variant_dirs(build_dir)
    repo = _repo_id(repo_id, Path(project) if project else build_dir.resolve().parent)
    metas = _metadata(variants)
    version = _version(metas)
    _refuse_twins(metas)
    _refuse_dirty(metas, allow_dirty)
    _check(variants)
    plan = Plan(repo, branch or f"v{version}", version, variants)
    for d in variants.values():
        plan.files.update(_local_files(d))

    endpoint = (endpoint or settings.current().hf_endpoint or DEFAULT_ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token or token_from_env())
    with translate(endpoint, repo, "list files"):
        _remote_files(api, plan)
    card = render_card(plan, metas)
    result = {"repo_id": repo, "endpoint": endpoint, "branch": plan.branch, "version": version,
              "variants": sorted(variants), "added": sorted(plan.files), "deleted": sorted(plan.deletes),
              "dry_run": dry_run, "commits": [], "card": None}
    if dry_run:
        _print_dry_run(plan, endpoint)
    else:
        result["commits"] = _push_variants(api, plan, endpoint, private, create_pr)
        result["card"] = _push_card(api, plan, endpoint, card, create_pr)
        print(f"uploaded {len(plan.files)} file(s), deleted {len(plan.deletes)} to {repo}@{plan.branch} "
              f"({endpoint}); load with get_kernel({repo!r}, version={version})")
    if output_json:
        Path(output_json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _refuse_dirty(metas: dict, allow_dirty: bool) -> None:
    """A variant built from uncommitted sources cannot be traced back to a commit: refuse it unless asked."""
    dirty = sorted(n for n, m in metas.items() if ((m.get("provenance") or {}).get("kernel") or {}).get("dirty"))
    if dirty and not allow_dirty:
        raise UsageError(f"{', '.join(dirty)}: built from uncommitted sources (provenance.kernel.dirty); commit "
                         "and rebuild, or pass --allow-dirty")


def _refuse_twins(metas: dict) -> None:
    """A twin build ran its kernels on the CPU in our stand-in for the hardware: a test artefact, never a
    kernel to publish (no flag overrides this)."""
    from ..build.check import twin_of

    twins = sorted(f"{n} ({twin_of(m)})" for n, m in metas.items() if twin_of(m))
    if twins:
        raise UsageError(f"{', '.join(twins)}: a twin build (--cann-twin) is for testing and is never uploaded; "
                         "build the real variant (on a host with the toolkit, or with build --all)")


def _print_dry_run(plan: Plan, endpoint: str) -> None:
    print(f"dry run: {plan.repo_id} on {endpoint}")
    print(f"  branch {plan.branch}: {len(plan.files)} file(s) to upload, {len(plan.deletes)} to delete")
    for p in sorted(plan.deletes):
        print(f"    - {p}")
    for p in sorted(plan.files):
        print(f"    + {p}")
    print("  branch main: README.md (card)")


def _push_variants(api, plan: Plan, endpoint: str, private: bool, create_pr: bool) -> list[dict]:
    """Creates repo and branch, then commits every variant file in one commit; returns its record."""
    repo = plan.repo_id
    _create_repo(api, repo, endpoint, private)
    with translate(endpoint, repo, f"create branch {plan.branch}"):
        if not create_pr:
            api.create_branch(repo, branch=plan.branch, repo_type="kernel", exist_ok=True)
    ops = _operations(plan)
    size = sum(local.stat().st_size for local in plan.files.values())
    print(f"committing {len(plan.files)} file(s) ({size / 1e6:.1f} MB), {len(plan.deletes)} deletion(s) to "
          f"{repo}@{plan.branch} in one commit", flush=True)
    msg = f"Upload {', '.join(sorted(plan.variants))} (version {plan.version})"
    with translate(endpoint, repo, f"commit to {plan.branch}"):
        info = api.create_commit(repo, ops, commit_message=msg, revision=plan.branch, repo_type="kernel",
                                 create_pr=create_pr)
    return [{"oid": info.oid, "url": str(info.commit_url), "pr": info.pr_url}]


def _create_repo(api, repo: str, endpoint: str, private: bool) -> None:
    """create_repo(exist_ok=True), minus its fallback for a 403 on an existing repo, which builds a URL that
    huggingface_hub cannot parse for any endpoint but huggingface.co (HfUriError). The same decision here: a
    repo that exists is fine, whether this token may create repos or not; the commit then says if it may
    write."""
    from huggingface_hub.errors import HfHubHTTPError

    with translate(endpoint, repo, "create repo"):
        try:
            api.create_repo(repo, repo_type="kernel", private=private, exist_ok=False)
        except HfHubHTTPError as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status == 409 or (status == 403 and api.repo_exists(repo, repo_type="kernel")):
                return
            raise


def _push_card(api, plan: Plan, endpoint: str, card: str, create_pr: bool) -> str:
    """The card lives on main (the hub shows main's README), whatever branch the variants went to."""
    from huggingface_hub import CommitOperationAdd

    with translate(endpoint, plan.repo_id, "commit the card to main"):
        info = api.create_commit(plan.repo_id, [CommitOperationAdd("README.md", card.encode())], revision="main",
                                 commit_message=f"Card for version {plan.version}", repo_type="kernel",
                                 create_pr=create_pr)
    return info.oid


__all__ = ["upload", "HubError", "variant_dirs", "token_from_env"]


def run(args) -> int:
    upload(args.build_dir, repo_id=args.repo_id, project=args.project, branch=args.branch, private=args.private,
           create_pr=args.create_pr, dry_run=args.dry_run, endpoint=args.endpoint, output_json=args.output_json,
           allow_dirty=args.allow_dirty)
    return 0
