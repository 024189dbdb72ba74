"""A seeded random mutator over real build.toml files, bounded in time: no input ends in a traceback.

Every valid build.toml of tests/projects/ and kernels_src/ is mutated the way a careless user, a broken
download or an attacker would: bytes flipped, the file cut, arrays nested hundreds deep, megabyte values,
invalid UTF-8, tables duplicated or multiplied, control characters, paths leaving the project, output
flags, values of the wrong type. Each mutant goes through the real CLI (`cli.main`, in this process so
that hundreds fit in the time bound; a sample also through `python -m kernel_builder`): the exit code
is one errors.py documents for it, stderr is one line (stdout holds the notes), never a traceback or an
"internal error", and nothing is written.

The seed is fixed so that CI is reproducible; KB_FUZZ_SEED=<n> and KB_FUZZ_SECONDS=<s> explore further.
A failure names the seed, the mutant's number and its mutations, and keeps the mutant's build.toml.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from kernel_builder import cli

REPO = Path(__file__).resolve().parent.parent
SEEDS = sorted(p.parent for root in (REPO / "tests" / "projects", REPO / "kernels_src") for p in root.rglob("build.toml"))
SEED = int(os.environ.get("KB_FUZZ_SEED", "13"))
SECONDS = float(os.environ.get("KB_FUZZ_SECONDS", "15"))
EXIT_CODES = {0, 2, 3}  # planned, bad input, environment (a dependency this host lacks); 1 is a bug
MIN_MUTANTS = 40  # even on a loaded machine: fewer means the bound hides the test


# --------------------------------------------------------------------------------------------------
# Mutations: each takes the file's bytes and a Random, returns new bytes
# --------------------------------------------------------------------------------------------------


def _at_line_start(data: bytes, rnd: random.Random) -> int:
    starts = [0] + [m.end() for m in re.finditer(b"\n", data)]
    return rnd.choice(starts)


def flip_bytes(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        if b:
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
    return bytes(b)


def truncate(data: bytes, rnd: random.Random) -> bytes:
    return data[:rnd.randrange(len(data) + 1)]


def deep_nesting(data: bytes, rnd: random.Random) -> bytes:
    depth = rnd.choice([17, 100, 600, 5000])
    value = rnd.choice([b"[" * depth + b"]" * depth, b"{a = " * depth + b"1" + b"}" * depth,
                        b"[" * depth + b"1" + b"]" * depth])
    key = rnd.choice([b"src", b"cxx-flags", b"x", b"depends"])
    i = _at_line_start(data, rnd)
    return data[:i] + key + b" = " + value + b"\n" + data[i:]


def huge_value(data: bytes, rnd: random.Random) -> bytes:
    strings = list(re.finditer(rb'"([^"\n]*)"', data))
    if not strings:
        return data + b'\nx = "' + b"a" * 100_000 + b'"\n'
    m = rnd.choice(strings)
    size = rnd.choice([300, 5_000, 300_000, 3_000_000])
    return data[:m.start(1)] + rnd.choice([b"a", b"/", b"\\u00e9", b"ab/"]) * size + data[m.end(1):]


def invalid_utf8(data: bytes, rnd: random.Random) -> bytes:
    i = rnd.randrange(len(data) + 1)
    return data[:i] + rnd.choice([b"\x80", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe9t\xe9", b"\xf4\x90\x80\x80"]) + data[i:]


def duplicate_table(data: bytes, rnd: random.Random) -> bytes:
    blocks = re.split(rb"(?m)^(?=\[)", data)
    tables = [b for b in blocks if b.startswith(b"[")]
    if not tables:
        return data + data
    block = rnd.choice(tables)
    if rnd.random() < 0.5:
        return data + b"\n" + block  # the same table twice: a TOML error
    m = re.match(rb"\[([^\]\n]*)\]", block)
    if m is None:  # an earlier mutation broke the header
        return data + b"\n" + block
    head = m.group(1)
    copies = [block.replace(b"[" + head + b"]", b"[" + head + b"_%d]" % i, 1) for i in range(rnd.choice([2, 50, 500]))]
    return data + b"\n" + b"\n".join(copies)


def control_char(data: bytes, rnd: random.Random) -> bytes:
    strings = list(re.finditer(rb'"([^"\n]*)"', data))
    if not strings:
        return data
    m = rnd.choice(strings)
    esc = rnd.choice([b"\\n", b"\\u0000", b"\\r", b"\\u2028", b"\\u001b[31m", b"\\t"])
    return data[:m.end(1)] + esc + data[m.end(1):]


def hostile_path(data: bytes, rnd: random.Random) -> bytes:
    paths = list(re.finditer(rb'"([^"\n]*\.(?:cpp|cu|h|cuh|hpp)|[a-z_]+/[a-z_]*)"', data))
    if not paths:
        return data
    m = rnd.choice(paths)
    bad = rnd.choice([b"../outside.cpp", b"/etc/passwd", b"a/../../x.cpp", b"k" * 300 + b".cpp", b"", b".",
                      b"torch-ext\\\\x.cpp", b"./" * 600 + b"x.cpp", b"nul\\u0000.cpp"])
    return data[:m.start(1)] + bad + data[m.end(1):]


def output_flag(data: bytes, rnd: random.Random) -> bytes:
    heads = [m.end() for m in re.finditer(rb"(?m)^\[(?:kernel\.[^\]]+|torch)\]\n", data)]
    if not heads:
        return data
    i = rnd.choice(heads)
    key = rnd.choice([b"cxx-flags", b"cuda-flags", b"ascendc-flags"])
    flag = rnd.choice([b'"-o", "/tmp/x"', b'"-o/tmp/x"', b'"-Wl,-o,/tmp/x"', b'"-Xlinker", "-o"', b'"@/tmp/rsp"',
                       b'"--output-file=/tmp/x"', b'"-MF", "/tmp/d"', b'"-save-temps"', b'"-odir", "/tmp"'])
    return data[:i] + key + b" = [" + flag + b"]\n" + data[i:]


def wrong_type(data: bytes, rnd: random.Random) -> bytes:
    lines = list(re.finditer(rb"(?m)^([A-Za-z0-9_.-]+)\s*=\s*(.*)$", data))
    if not lines:
        return data
    m = rnd.choice(lines)
    value = rnd.choice([b"1", b"-1", b"true", b"1979-05-27T07:32:00Z", b"{}", b"[1, 2]", b'[["a"]]', b'{a = "b"}',
                        b"nan", b"9" * 5000, b'"x"', b"[]", b'""', b"0x7fffffffffffffff", b"1e999"])
    return data[:m.start(2)] + value + data[m.end(2):]


# Values a key may well hold: the mutant stays valid TOML and often a valid project, so planning is reached.
PLAUSIBLE = {
    b"depends": [b'["torch", "cutlass_4_5"]', b'["torch", "cutlass_2_10", "cutlass_3_6"]', b'["torch", "sycl_tla"]', b"[]"],
    b"cuda-capabilities": [b'["12.0f", "7.0"]', b'["9.0a+PTX"]', b'["1.0"]', b"[]", b'["8.0", "8.0"]'],
    b"backends": [b'["cpu"]', b'["cuda", "cpu", "rocm", "xpu", "metal"]', b'["cann"]', b'["neuron", "tpu"]'],
    b"stable-abi": [b'"2.9"', b'"3.0"', b"{ cpu = \"2.10\" }"],
    b"minver": [b'"2.20"', b'"1.0"', b'"99.99"', b'"2.13.0"'],
    b"maxver": [b'"2.0"', b'"2.13"', b'"12.8"'],
    b"edition": [b"4", b"5", b"6"],
    b"version": [b"0", b"2", b"-1"],
    b"python-depends": [b'["einops"]', b'["nvidia-cutlass-dsl"]', b'["numpy"]'],
    b"soc-versions": [b'["Ascend310P3"]', b'["Ascend910B1", "Ascend910_9391"]'],
    b"pyext": [b'["py", "json"]', b'["so"]'],
    b"backend": [b'"cpu"', b'"cuda"', b'"rocm"', b'"cann"', b'"metal"'],
}


def plausible_value(data: bytes, rnd: random.Random) -> bytes:
    lines = [m for m in re.finditer(rb"(?m)^([A-Za-z0-9_-]+)\s*=\s*(.*)$", data) if m.group(1) in PLAUSIBLE]
    if not lines:
        return data
    m = rnd.choice(lines)
    return data[:m.start(2)] + rnd.choice(PLAUSIBLE[m.group(1)]) + data[m.end(2):]


def drop_or_swap_lines(data: bytes, rnd: random.Random) -> bytes:
    lines = data.split(b"\n")
    if len(lines) < 2:
        return data
    i, j = rnd.randrange(len(lines)), rnd.randrange(len(lines))
    if rnd.random() < 0.5:
        del lines[i]
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


MUTATIONS = [flip_bytes, truncate, deep_nesting, huge_value, invalid_utf8, duplicate_table, control_char,
             hostile_path, output_flag, wrong_type, drop_or_swap_lines, plausible_value, plausible_value]


# --------------------------------------------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(args))
    return rc, out.getvalue(), err.getvalue()


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _problems(rc: int, stdout: str, stderr: str, project: Path) -> list[str]:
    """What breaks the promise; the project's own path (as long as the user made it) does not count
    against the 500 characters of the error line."""
    found = []
    if rc not in EXIT_CODES:
        found.append(f"exit {rc}, not one of {sorted(EXIT_CODES)}")
    lines = stderr.splitlines()
    if rc == 0 and lines:
        found.append("stderr is not empty on success")
    if rc != 0 and len(lines) != 1:
        found.append(f"stderr has {len(lines)} lines, not one")
    if lines and len(lines[-1].replace(str(project), "")) > 500:
        found.append(f"the error line has {len(lines[-1])} characters (values must be cut)")
    both = stdout + stderr
    for word in ("Traceback", "internal error"):
        if word in both:
            found.append(f"{word!r} in the output")
    return found


def test_mutants_of_real_build_tomls_end_in_one_line(tmp_path, monkeypatch):
    """Mutants go through `list-variants`; those refused also through `build --out`, which must refuse them
    the same way and write nothing, neither the output directory nor anything in the project."""
    monkeypatch.setenv("KERNEL_BUILDER_CACHE", str(tmp_path / "cache"))
    from kernel_builder import settings

    settings.reload()
    projects = []
    for seed_dir in SEEDS:
        dst = tmp_path / "p" / seed_dir.relative_to(REPO).as_posix().replace("/", "_")
        shutil.copytree(seed_dir, dst, symlinks=True, ignore=shutil.ignore_patterns("build", "__pycache__"))
        projects.append((dst, (dst / "build.toml").read_bytes(), _files(dst)))
    rnd = random.Random(SEED)
    deadline, n, refused, failures = time.monotonic() + SECONDS, 0, 0, []
    while time.monotonic() < deadline and len(failures) < 5:
        project, original, before = rnd.choice(projects)
        recipe = [rnd.choice(MUTATIONS) for _ in range(rnd.choice([1, 1, 2, 3]))]
        data = original
        for mutate in recipe:
            data = mutate(data, rnd)
        (project / "build.toml").write_bytes(data)
        rc, stdout, stderr = _cli("list-variants", str(project))
        found = _problems(rc, stdout, stderr, project)
        if rc != 0 and not found:
            refused += 1
            out = tmp_path / f"out{n}"
            rc2, stdout2, stderr2 = _cli("build", str(project), "--out", str(out))
            found += _problems(rc2, stdout2, stderr2, project) + ([f"build exited {rc2}, list-variants {rc}"] if rc2 != rc else [])
            found += [f"{out} was written"] if out.exists() else []
        found += [f"the project changed: {sorted(_files(project) ^ before)[:3]}"] if _files(project) != before else []
        if found:
            keep = tmp_path / f"mutant{n}.toml"
            keep.write_bytes(data)
            failures.append(f"seed {SEED} mutant {n} of {project.name} ({', '.join(m.__name__ for m in recipe)}; "
                            f"kept in {keep}): {'; '.join(found)}\n  stderr: {stderr[:300]!r}")
        (project / "build.toml").write_bytes(original)
        n += 1
    print(f"fuzz: seed {SEED}: {n} mutants, {refused} refused, in {SECONDS} s")
    assert not failures, "\n".join(failures)
    assert n >= MIN_MUTANTS and refused >= n // 4, f"only {n} mutants ({refused} refused) in {SECONDS} s"


def test_a_sample_of_mutants_through_the_installed_cli(tmp_path):
    """The same promise end to end, in a fresh interpreter: what a user's shell sees on stderr. One mutant
    of each class the issue found, each certain to be refused."""
    project = tmp_path / "activation"
    shutil.copytree(REPO / "kernels_src" / "activation", project, ignore=shutil.ignore_patterns("build", "__pycache__"))
    original = (project / "build.toml").read_bytes()
    sample = {
        "invalid UTF-8 in a comment": b"# \xff\n" + original,
        "arrays nested 600 deep": original + b"\nx = " + b"[" * 600 + b"]" * 600 + b"\n",
        "a 1 MB name": original.replace(b'name = "activation"', b'name = "' + b"a" * 1_000_000 + b'"', 1),
        "an output flag": re.sub(rb"(?m)^(\[kernel\.[^\]]+\]\n)", rb'\1cxx-flags = ["-o", "/elsewhere"]\n', original, count=1),
        "a path leaving the project": original.replace(b'src = ["', b'src = ["../outside.cpp", "', 1),
    }
    env = dict(os.environ, KERNEL_BUILDER_CACHE=str(tmp_path / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "builder"), env.get("PYTHONPATH")]))
    for what, data in sample.items():
        assert data != original, what
        (project / "build.toml").write_bytes(data)
        proc = subprocess.run([sys.executable, "-m", "kernel_builder", "build", str(project), "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, env=env, timeout=300)
        found = _problems(proc.returncode, proc.stdout, proc.stderr, project)
        assert proc.returncode == 2 and not found, f"{what}: exit {proc.returncode} {found}\n{proc.stderr[:2000]}"
        assert "build.toml" in proc.stderr and not (tmp_path / "out").exists(), what
