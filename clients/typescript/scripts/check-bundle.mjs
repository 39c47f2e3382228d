// Fails if the checked-in browser bundle is not what the sources build to: rebuilds it into a
// temporary directory and compares the bytes.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { bundle } from "./bundle.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const checkedIn = join(root, "dist", "gameserver-client.browser.js");
const dir = mkdtempSync(join(tmpdir(), "gs-bundle-"));
try {
  const fresh = join(dir, "gameserver-client.browser.js");
  await bundle(fresh);
  let current;
  try {
    current = readFileSync(checkedIn);
  } catch {
    console.error(`${checkedIn} is missing: run npm run bundle and commit it`);
    process.exit(1);
  }
  if (!current.equals(readFileSync(fresh))) {
    console.error(`${checkedIn} differs from what the sources build to: run npm run bundle and commit it`);
    process.exit(1);
  }
  console.log(`${checkedIn} is up to date (${current.length} bytes)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
