"""One class over the container engine's CLI (docker or podman): the only module that spawns it.

Everything that can go wrong on the engine's side (daemon down, image missing, disk full) becomes one
EnvironmentProblem line; callers never parse engine output themselves.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..errors import EnvironmentProblem
from ..tools import Completed, probe, run, run_logged

# Paths inside every build container.
SRC, OUT, KB, CACHE, CCACHE = "/src", "/out", "/opt/kernel-builder", "/cache", "/ccache"
CA_IN_CONTAINER = "/etc/kernel-builder/ca.crt"  # not the standard path: installing ca-certificates would replace it
MAKE_BASE = "bash scripts/make_base_image.sh bookworm local/debian:bookworm"


@dataclass(frozen=True)
class Mount:
    host: Path
    container: str
    read_only: bool = False

    def arg(self) -> str:
        return f"type=bind,source={self.host},target={self.container}" + (",readonly" if self.read_only else "")


def host_ca_bundle() -> Path | None:
    """The CA bundle pip on this host trusts (PIP_CERT, pip's cert setting, then the system bundle)."""
    for cand in (settings.current().ca_bundle, "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def _explain(engine: str, text: str, what: str) -> str:
    """One line for an engine failure: the known causes by name, else the engine's last line."""
    low = text.lower()
    if "cannot connect to the docker daemon" in low or "is the docker daemon running" in low or \
            "cannot connect to podman" in low or "connect: no such file or directory" in low:
        return f"{engine}: the daemon is not running (start it: `dockerd &` or `systemctl start docker`)"
    if "no space left on device" in low:
        return (f"{engine}: out of disk space while {what}; free some with `kernel-builder images prune` or "
                f"`{engine} system prune`")
    if "permission denied" in low and "docker.sock" in low:
        return f"{engine}: permission denied on the daemon's socket (add yourself to the docker group)"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return f"{engine}: {what} failed: {lines[-1][:300] if lines else 'no output'}"


class Engine:
    """docker or podman, found on PATH (or named). Builds use BuildKit: a docker client without buildx
    and newer than 22 cannot, so such a client is passed over for one that can (Debian's /usr/bin/docker)."""

    def __init__(self, name: str | None = None):
        self.path, self.kind = self._find(name or settings.current().engine)
        self.name = Path(self.path).name

    @staticmethod
    def _find(name: str | None) -> tuple[str, str]:
        if name:
            path = shutil.which(name)
            if not path:
                raise EnvironmentProblem(f"--engine {name}: not found on PATH")
            return path, "podman" if "podman" in Path(path).name else "docker"
        tried = []
        for cand in (shutil.which("docker"), "/usr/bin/docker", shutil.which("podman")):
            if not cand or not Path(cand).exists() or cand in tried:
                continue
            tried.append(cand)
            if "podman" in Path(cand).name:
                return cand, "podman"
            if _docker_can_buildkit(cand):
                return cand, "docker"
        if tried:
            raise EnvironmentProblem(f"{', '.join(tried)}: no docker client that can use BuildKit (install the "
                                     "buildx plugin, or Debian's docker.io), and no podman")
        raise EnvironmentProblem("no container engine: install docker (apt-get install docker.io) or podman")

    # --- plumbing -----------------------------------------------------------------------------------
    def _env(self) -> dict:
        env = dict(os.environ)
        if self.kind == "docker":
            env["DOCKER_BUILDKIT"] = "1"
        return env

    def _call(self, args: list[str], what: str, timeout: float | None = 600) -> Completed:
        r = run([self.path, *args], f"{self.name}: {what}", timeout=timeout, env=self._env())
        if r.returncode != 0:
            raise EnvironmentProblem(_explain(self.name, r.stderr + r.stdout, what))
        return r

    def ping(self) -> str:
        """The server's version; raises the daemon-down line when there is no server."""
        return self._call(["version", "--format", "{{.Server.Version}}"], "asking for the version", 30).stdout.strip()

    def image_exists(self, ref: str) -> bool:
        r = run([self.path, "image", "inspect", "--format", "{{.Id}}", ref], f"{self.name}: inspecting {ref}",
                timeout=60, env=self._env())
        if r.returncode != 0 and "no such" not in (r.stderr + r.stdout).lower() and "not known" not in r.stderr.lower():
            raise EnvironmentProblem(_explain(self.name, r.stderr, f"inspecting {ref}"))
        return r.returncode == 0

    def pull(self, ref: str) -> str | None:
        """None when pulled, else the engine's last line (the caller says what to do instead)."""
        r = run([self.path, "pull", "-q", ref], f"{self.name}: pulling {ref}", timeout=1800, env=self._env())
        if r.returncode == 0:
            return None
        lines = [ln for ln in (r.stderr + r.stdout).strip().splitlines() if ln.strip()]
        return lines[-1].strip()[:200] if lines else f"exit status {r.returncode}"

    def ensure_base(self, ref: str) -> None:
        if self.image_exists(ref):
            return
        why = self.pull(ref)
        if why is None:
            return
        if ref.startswith("quay.io/ascend/"):
            fix = (f"pull it where quay.io is reachable (`{self.name} pull {ref}`) and bring it here with "
                   f"`{self.name} save {ref} | {self.name} load`")
        else:
            fix = f"make a Debian one with `{MAKE_BASE}` and pass --base-image local/debian:bookworm"
        raise EnvironmentProblem(f"base image {ref} is neither local nor pullable ({why}); {fix}")

    def build(self, context: Path, tag: str, build_args: dict[str, str], secrets: dict[str, Path],
              labels: dict[str, str], log: Path, platform: str | None = None) -> None:
        args = ["build", "--network", "host", "-t", tag, "-f", str(context / "Dockerfile")]
        if platform:
            args += ["--platform", platform]
        for k, v in build_args.items():
            args += ["--build-arg", f"{k}={v}"]
        for k, v in labels.items():
            args += ["--label", f"{k}={v}"]
        for k, v in secrets.items():
            args += ["--secret", f"id={k},src={v}"]
        if self.kind == "docker":
            args += ["--progress", "plain"]
        args.append(str(context))
        with open(log, "a") as f:
            rc = run_logged([self.path, *args], f, f"{self.name}: building image {tag}", env=self._env())
        if rc != 0:
            text = log.read_text(errors="replace")
            raise EnvironmentProblem(_explain(self.name, _last_error(text), f"building image {tag}") + f" (log: {log})")

    def run_argv(self, image: str, command: list[str], mounts: list[Mount], env: dict[str, str],
                 workdir: str = "/tmp", platform: str | None = None) -> list[str]:
        """The exact command line that runs `command` in a fresh container as the invoking user."""
        args = [self.path, "run", "--rm", "--network", "host", "-w", workdir] + self.user_args()
        if platform:
            args += ["--platform", platform]
        for m in mounts:
            args += ["--mount", m.arg()]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        return args + [image, *command]

    def run(self, image: str, command: list[str], mounts: list[Mount], env: dict[str, str], log: Path,
            workdir: str = "/tmp", platform: str | None = None) -> int:
        """Run `command` in a fresh container; output appended to `log`."""
        argv = self.run_argv(image, command, mounts, env, workdir, platform)
        with open(log, "a") as f:
            return run_logged(argv, f, f"{self.name}: running {image}", env=self._env())

    def user_args(self) -> list[str]:
        """Files written into mounted directories belong to the invoking user, never to root."""
        if self.kind == "podman" and os.getuid() != 0:
            return ["--userns=keep-id"]
        return ["--user", f"{os.getuid()}:{os.getgid()}"]

    def images(self, label: str) -> list[dict]:
        fmt = "{{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}\t{{.CreatedSince}}"
        out = self._call(["images", "--filter", f"label={label}", "--format", fmt], "listing images").stdout
        rows = []
        for line in out.splitlines():
            ref, iid, size, created = (line.split("\t") + ["", "", "", ""])[:4]
            rows.append({"ref": ref, "id": iid, "size": size, "created": created})
        return rows

    def remove(self, ref: str) -> None:
        self._call(["rmi", ref], f"removing {ref}")


def _docker_can_buildkit(path: str) -> bool:
    r = probe([path, "buildx", "version"], timeout=30)
    if r is None or r.returncode == 0:
        return r is not None
    v = probe([path, "version", "--format", "{{.Client.Version}}"], timeout=30)
    m = re.match(r"(\d+)\.", v.stdout.strip()) if v else None
    return bool(m) and int(m.group(1)) < 23  # BuildKit is built into clients up to 22.x


def _last_error(text: str) -> str:
    """The most telling line of a failed image build: BuildKit's 'ERROR:' / 'error:' lines, else the end."""
    lines = [ln for ln in text.splitlines() if ln.strip() and "executor failed running" not in ln
             and not ln.startswith((" >", "----"))]
    errs = [re.sub(r"^#\d+ [\d.]+ ", "", ln) for ln in lines
            if re.search(r"\berror\b|ERROR|No matching distribution|not found", ln)]
    return errs[0] if errs else (lines[-1] if lines else "no output")
