"""Many variants, each in its container: `build --all`, `list-variants --all`, `images`, `ci github`.

Owns: `table` (matrix.toml -> environments -> the variant each gives a project), `matrix.toml` (the data:
torch x backend x arch rows and their images), `images` (base images and the per-environment image),
`engine` (the one class wrapping docker/podman), `containers` (runs the host build of build/ inside each
environment, in parallel, with stamps and logs), `ci` (the GitHub workflow).
May import: errors, settings, tools, variants, project, backends, build. Never hub/.
"""
