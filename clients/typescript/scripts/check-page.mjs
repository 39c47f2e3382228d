// Fails if the checked-in demo page (games/rooms/static/play.html) is not what its template and
// the sources build to: rebuilds it into a temporary directory and compares the bytes.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { pagePath, writePage } from "./page.mjs";

const dir = mkdtempSync(join(tmpdir(), "gs-page-"));
try {
  const fresh = join(dir, "play.html");
  await writePage(fresh);
  let current;
  try {
    current = readFileSync(pagePath);
  } catch {
    console.error(`${pagePath} is missing: run npm run page and commit it`);
    process.exit(1);
  }
  if (!current.equals(readFileSync(fresh))) {
    console.error(
      `${pagePath} differs from what play.src.html and page/play.ts build to: ` +
        "edit those, not play.html; run npm run page and commit it",
    );
    process.exit(1);
  }
  console.log(`${pagePath} is up to date (${current.length} bytes)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
