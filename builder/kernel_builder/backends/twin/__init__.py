"""CPU twin runtime for Ascend C kernels.

Stand-in headers (``include/``) and CPU semantics (``src/``) for the closed
parts of Huawei's CPU-debug library, so that unmodified Ascend C kernel sources
compile with plain g++ against the open asc-devkit / asc-tools / libboundscheck
sources and run on the CPU. ``recipe.py`` says how to compile and link them.
"""
