"""Publishing and serving kernels: `upload`, `mirror`, `serve`.

Owns: `upload` (a checked build tree -> a hub repo through huggingface_hub), `mirror` (one published
version from a hub to another), `serve` (the private hub: the HTTP API the `kernels` loader and
huggingface_hub call) on `store` (bare git repositories on disk), `translate` (huggingface_hub's
exceptions -> our one-line hub errors).
May import: errors, settings, tools, variants, project (upload reads build.toml), build (check, layout,
render). Never matrix/.
"""
