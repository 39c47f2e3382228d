// Builds the browser bundle: one ESM file of the browser-safe entry (src/index.ts), with no
// dependency, written to the path given (npm run bundle: dist/gameserver-client.browser.js).
// The same sources and the same pinned esbuild give the same bytes: npm run check-bundle.

import { build } from "esbuild";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Writes the bundle to `outfile`. */
export async function bundle(outfile) {
  await build({
    absWorkingDir: root,
    entryPoints: ["src/index.ts"],
    outfile,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    charset: "utf8",
    legalComments: "none",
    logLevel: "warning",
    banner: {
      js: "// @gameserver/client, browser bundle. Built from clients/typescript/src by `npm run bundle`; do not edit by hand.",
    },
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const outfile = process.argv[2];
  if (outfile === undefined) {
    console.error("usage: node scripts/bundle.mjs OUTFILE");
    process.exit(2);
  }
  await bundle(resolve(outfile));
}
