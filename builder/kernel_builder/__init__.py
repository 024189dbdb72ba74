"""kernel-builder: build PyTorch kernel projects (build.toml) into Hugging Face kernel-hub variants."""

__version__ = "0.1.0"
