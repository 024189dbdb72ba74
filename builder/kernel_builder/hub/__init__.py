"""Publishing and serving kernels: `upload`, `mirror`, `serve`.

Owns: `upload` (a checked build tree -> a hub repo through huggingface_hub, in one commit), `mirror` (one
published version from a hub to another), `translate` (huggingface_hub's exceptions -> our one-line hub
errors), and `serve`, the private hub: `serve` (start/stop) on `server` (waitress with timeouts and limits),
`routes` (the HTTP API), `auth` (the token file), `commit` + `commit_body` (a streamed commit), `store` +
`objects` + `audit` (bare git repositories, loose objects, the audit log).
May import: errors, settings, tools, variants, project (upload reads build.toml), build (check, layout,
render). Never matrix/.
"""
