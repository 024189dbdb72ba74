"""Rewrite the golden files under tests/golden/ from what the renderers make now.

Run it after a deliberate change to a CMake template or to the cann backend, then review `git diff
tests/golden`: the tests only compare against these files and never write them, so a test cannot make
itself pass.

    .venv/bin/python scripts/update_goldens.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import test_cann  # noqa: E402
import test_cann_build  # noqa: E402


def main() -> int:
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for golden in sorted(test_cann.RENDERS):
            _, texts = test_cann.golden_texts(golden, Path(tmp) / golden)
            for name, text in texts.items():
                written.append(_write(test_cann.GOLDEN / name, text))
    for golden in sorted(test_cann_build.RMSNORM_RENDERS):
        _, text = test_cann_build.rmsnorm_golden_text(golden)
        written.append(_write(test_cann_build.GOLDEN / f"{golden}.CMakeLists.txt", text))
    changed = [p for p, was_changed in written if was_changed]
    print(f"{len(written)} golden file(s), {len(changed)} changed" + "".join(f"\n  {p}" for p in changed))
    return 0


def _write(path: Path, text: str) -> tuple[Path, bool]:
    old = path.read_text() if path.is_file() else None
    if old != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path.relative_to(TESTS.parent), old != text


if __name__ == "__main__":
    sys.exit(main())
