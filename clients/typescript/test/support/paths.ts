/** Where the package and the repository are, wherever the compiled tests run from. */

import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, "utf8")).name === "@gameserver/client") {
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error("the package's root (package.json of @gameserver/client) was not found");
    }
    dir = parent;
  }
}

/** clients/typescript. */
export const packageRoot = findPackageRoot();
/** The repository: PROTOCOL.md and the server's sources. */
export const repoRoot = join(packageRoot, "..", "..");
