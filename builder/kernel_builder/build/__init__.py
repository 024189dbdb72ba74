"""One variant on this host: `kernel-builder build` (without --all) and `check`.

Owns: `host` (what this machine can build), `plan` (pure: selection, plan, fingerprint; no writes, no
downloads), `staging` (carries a plan out: stage, compile, assemble, stamp), `compile` (the child process
that runs torch's cpp_extension + ninja), `deps` (header trees such as CUTLASS, fetched only to compile),
`cache`, `render` (jinja2 templates), `layout` (the variant tree, metadata.json, digest), `elf`, `check`
(the loader's rules, applied to a built tree).
May import: errors, settings, tools, variants, project, backends. Never matrix/ or hub/: a container runs
this same code inside, and a hub only receives its output.
"""
