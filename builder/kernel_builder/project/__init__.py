"""The format layer: what a kernel project is, read once from build.toml into typed objects.

Owns: `config` (the reader: every key checked, one-line ConfigError naming file, key and line), `model`
(the typed Project, Kernel, General, Torch tables), `options` (BuildOptions from the command line),
`scaffold` (`kernel-builder init`).
May import: errors, variants, backends (each backend declares its own build.toml keys), build.render (the
scaffold's templates). Nothing here compiles, starts a container or talks to a hub.
"""
