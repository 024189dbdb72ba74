"""What the user asked of one build, beyond the project: one frozen value instead of a dict of flags."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildOptions:
    cuda_archs: tuple[str, ...] | None = None  # --cuda-archs: only these capabilities (development builds)
    stable_abi: str | None = None  # --stable-abi X.Y: build the torch-stable-abiXY variant (set by build --all)
    # --<family>-twin: build only that family's kernels, in its CPU twin mode (the backend decides what that
    # means: cann compiles its Ascend C kernels for the CPU); twin_targets: the chips the twin stands for (--soc)
    twin: str | None = None
    twin_targets: tuple[str, ...] = ()

    def fingerprint(self) -> dict:
        """The options that shape a build's output, as JSON-able data (fingerprint and cache keys)."""
        return {"cuda_archs": list(self.cuda_archs) if self.cuda_archs else None, "stable_abi": self.stable_abi,
                "twin": self.twin, "twin_targets": list(self.twin_targets)}
