"""kernel-builder: build PyTorch kernel projects (build.toml) into Hugging Face kernel-hub variants.

The package map (README "Layout of this repository" says the same at more length):
  cli.py        the verbs, wired to the folders below and nothing more
  project/      the format layer: build.toml -> typed Project, build options, `init`'s scaffold
  backends/     one module per backend family (cpu, cuda, cann) behind one Protocol, and their registry
  build/        one variant on this host: plan (pure), staging (doing), compile child, layout, check
  matrix/       many variants in containers: matrix.toml, images, the container engine, `ci github`
  hub/          publishing: upload, mirror, the private hub server and its git store
  variants.py   the loader's variant names; errors.py every typed error and exit code;
  settings.py   every environment variable we read; tools.py the one way a tool is run
"""

from pathlib import Path

__version__ = "0.1.0"
PACKAGE_DIR = Path(__file__).resolve().parent  # hashed into fingerprints, copied into build containers
