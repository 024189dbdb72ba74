"""Every error ends as one line and its exit code; a traceback only with `--debug`.

The paths held here could once end in a traceback: a program that hangs (the import probe of `check`, the
container engine), a container engine that disappears or answers nonsense, a bug of ours. The stand-in
engines are shell scripts on disk (real programs the real Engine runs), not mocks of our code.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from kernel_builder import backends, cli
from kernel_builder.build import check
from kernel_builder.build.host import detect
from kernel_builder.errors import (INTERRUPTED, UNEXPECTED, CheckFailed, CompileError, ConfigError,
                                   EnvironmentProblem, HubAuthError, HubError, HubNetworkError, HubRepoNotFound,
                                   KernelBuilderError, ToolTimeout, UsageError)
from kernel_builder.matrix.engine import Engine
from kernel_builder.tools import run, run_logged

from conftest import run_cli


def _program(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_every_exit_code_is_declared_in_errors_py():
    codes = {c.__name__: c.exit_code for c in (UsageError, ConfigError, EnvironmentProblem, ToolTimeout,
                                                CompileError, CheckFailed, HubError, HubAuthError,
                                                HubRepoNotFound, HubNetworkError)}
    assert codes == {"UsageError": 2, "ConfigError": 2, "EnvironmentProblem": 3, "ToolTimeout": 3,
                     "CompileError": 4, "CheckFailed": 5, "HubError": 6, "HubAuthError": 6,
                     "HubRepoNotFound": 6, "HubNetworkError": 7}
    assert (KernelBuilderError.exit_code, UNEXPECTED, INTERRUPTED) == (1, 1, 130)


def test_a_hanging_tool_is_one_line(tmp_path):
    slow = _program(tmp_path, "slow", "sleep 30")
    with pytest.raises(ToolTimeout, match=r"^probing slow: slow did not finish within 1 s$"):
        run([str(slow)], "probing slow", timeout=1)
    with open(tmp_path / "log", "w") as log, pytest.raises(ToolTimeout, match="did not finish within 1 s"):
        run_logged([str(slow)], log, "compiling", timeout=1)


def test_a_missing_tool_is_one_line(tmp_path):
    with pytest.raises(EnvironmentProblem, match=r"^linking: cannot run /nonexistent/ld: No such file"):
        run(["/nonexistent/ld"], "linking")
    with open(tmp_path / "log", "w") as log, pytest.raises(EnvironmentProblem, match="cannot run /nonexistent/cc"):
        run_logged(["/nonexistent/cc"], log, "compiling")


def test_check_reports_an_import_that_hangs_as_a_violation(tmp_path, monkeypatch):
    host = detect()
    variant = backends.get("cpu").variant(host)
    vdir = tmp_path / variant.name
    vdir.mkdir()
    (vdir / "__init__.py").write_text("import time\ntime.sleep(60)\n")
    monkeypatch.setattr(check, "IMPORT_TIMEOUT", 2.0)
    found = check._Findings(vdir)
    check._check_import(vdir, variant, "_hangs_cpu_0", found)
    assert list(found) == [f"{variant.name}/__init__.py: import: did not finish within 2 s (a hang at import time)"]


def test_engine_that_hangs_or_vanishes_is_one_line(tmp_path):
    fake = _program(tmp_path, "docker", "sleep 30")
    engine = Engine(str(fake))
    with pytest.raises(ToolTimeout, match=r"docker: asking for the version: docker did not finish within 1 s"):
        engine._call(["version"], "asking for the version", timeout=1)
    fake.unlink()
    with pytest.raises(EnvironmentProblem, match="cannot run"):
        engine.run("img", ["true"], [], {}, tmp_path / "run.log")
    with pytest.raises(EnvironmentProblem, match="cannot run"):
        engine.image_exists("img")


def test_engine_daemon_down_through_the_cli(tmp_path):
    fake = _program(tmp_path, "docker", "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\nexit 1")
    r = run_cli("images", "list", "--engine", str(fake), check=False)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == ["kernel-builder: error: docker: the daemon is not running "
                                             "(start it: `dockerd &` or `systemctl start docker`)"]


def test_unknown_backend_is_one_line():
    with pytest.raises(UsageError, match=r"^backend 'quantum' is not built by kernel-builder"):
        backends.get("quantum")


def test_debug_prints_the_traceback_of_a_typed_error(tmp_path):
    plain = run_cli("list-variants", tmp_path / "nowhere", check=False)
    debug = run_cli("--debug", "list-variants", tmp_path / "nowhere", check=False)
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr and len(plain.stderr.strip().splitlines()) == 1
    assert "Traceback (most recent call last)" in debug.stderr and "ConfigError" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


def test_a_bug_is_one_line_and_debug_shows_it(tmp_path, monkeypatch, capsys):
    """An exception we did not type (a bug) still ends in one line, exit 1, and a pointer to --debug."""
    def broken(a):
        raise KeyError("variant")

    monkeypatch.setattr(cli, "cmd_check", broken)
    assert cli.main(["check", str(tmp_path)]) == UNEXPECTED
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["kernel-builder: internal error: KeyError: 'variant' (run `kernel-builder "
                                        "--debug ...` for the traceback, and report it)"]
    assert cli.main(["--debug", "check", str(tmp_path)]) == UNEXPECTED
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.strip().splitlines()[-1] == "kernel-builder: internal error: KeyError: 'variant'"


def test_no_hidden_traceback_printer():
    """Only cli.main decides to print a traceback (with --debug)."""
    package = Path(cli.__file__).parent
    offenders = [f"{p.relative_to(package)}" for p in package.rglob("*.py")
                 if p.name != "cli.py" and ("print_exc" in p.read_text() or "format_exc" in p.read_text())]
    assert not offenders


def _truncated_copy(variant: Path, dst: Path, keep: int) -> Path:
    """A copy of a built variant whose extension is cut to `keep` bytes, its digest rewritten to match (as
    a broken download that was re-hashed, or a careless edit, would leave it): only the ELF is wrong."""
    import json

    from kernel_builder.build.layout import digest_dir

    shutil.copytree(variant, dst)
    so = next(dst.glob("*.so"))
    so.write_bytes(so.read_bytes()[:keep])
    meta = json.loads((dst / "metadata.json").read_text())
    meta["digest"] = digest_dir(dst)
    (dst / "metadata.json").write_text(json.dumps(meta, indent=2))
    return so


@pytest.mark.parametrize("keep", [100, 40, 4096])
def test_check_on_a_truncated_elf_is_one_line(built_kernels, tmp_path, keep):
    """kernel-abi-check raised a ValueError on such a file: `check` ended as an internal error (exit 1)."""
    variant = next(p for p in sorted(built_kernels["activation"].iterdir()) if (p / "metadata.json").is_file())
    so = _truncated_copy(variant, tmp_path / "build" / variant.name, keep)
    r = run_cli("check", tmp_path / "build", check=False)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr and "internal error" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{so.name}: elf: truncated" in lines[0], r.stderr


def test_elf_problem_reads_only_headers(built_kernels, tmp_path):
    from kernel_builder.build.elf import elf_problem

    variant = next(p for p in sorted(built_kernels["activation"].iterdir()) if (p / "metadata.json").is_file())
    whole = next(variant.glob("*.so"))
    assert elf_problem(whole) is None
    text = tmp_path / "text.so"
    text.write_text("not a library\n")
    assert elf_problem(text) == "not an ELF file"
    head = tmp_path / "head.so"
    head.write_bytes(whole.read_bytes()[:40])
    assert elf_problem(head) == "truncated ELF header (40 bytes)"
    cut = tmp_path / "cut.so"
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    assert elf_problem(cut).startswith("truncated: ")


@pytest.mark.parametrize("case", ["nested", "not-an-object", "huge-id"])
def test_check_on_a_hostile_metadata_json_is_one_short_line(built_kernels, tmp_path, case):
    """metadata.json nested 100,000 deep (json's RecursionError), a list, a 5 MB id (no such file name):
    each a finding of `check` (exit 5) in one line of bounded length, not an internal error."""
    import json

    variant = next(p for p in sorted(built_kernels["activation"].iterdir()) if (p / "metadata.json").is_file())
    dst = tmp_path / "build" / variant.name
    shutil.copytree(variant, dst)
    meta = json.loads((dst / "metadata.json").read_text())
    text = {"nested": "[" * 100_000 + "]" * 100_000, "not-an-object": "[1, 2]",
            "huge-id": json.dumps(dict(meta, id="a" * 5_000_000))}[case]
    (dst / "metadata.json").write_text(text)
    r = run_cli("check", tmp_path / "build", "--no-import", check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 5 and len(lines) == 1 and "internal error" not in r.stderr, r.stderr[:2000]
    assert "metadata.json" in lines[0] and len(lines[0].replace(str(tmp_path), "")) < 500, lines[0][:2000]
    assert all(len(line) < 1000 for line in r.stdout.splitlines())
