"""What the user asked of one build, beyond the project: one frozen value instead of a dict of flags."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildOptions:
    cuda_archs: tuple[str, ...] | None = None  # --cuda-archs: only these capabilities (development builds)
    stable_abi: str | None = None  # --stable-abi X.Y: build the torch-stable-abiXY variant (set by build --all)

    def fingerprint(self) -> dict:
        """The options that shape a build's output, as JSON-able data (fingerprint and cache keys)."""
        return {"cuda_archs": list(self.cuda_archs) if self.cuda_archs else None, "stable_abi": self.stable_abi}
