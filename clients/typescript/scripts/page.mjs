// Builds the demo page the server serves at /play (games/rooms/static/play.html): the template
// play.src.html with the page's script (page/play.ts and the package it imports) bundled into its
// one inline <script>. The server compiles play.html in and allows only its inline script and
// style, by their SHA-256 hashes: nothing is loaded from elsewhere and nothing is built at run
// time. The same sources and the same pinned esbuild give the same bytes: npm run check-page.
//
//   node scripts/page.mjs [OUTFILE]    (npm run page: games/rooms/static/play.html)

import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const statics = join(root, "..", "..", "games", "rooms", "static");

/** The page's template, and the page the server serves. */
export const templatePath = join(statics, "play.src.html");
export const pagePath = join(statics, "play.html");

/** Where the template takes the bundled script: exactly once. */
const MARKER = "<script>/* page script */</script>";

/** The placeholders the server fills in when it serves the page (server/src/app.rs). */
export const PLACEHOLDERS = ["{{websocket_port}}", "{{websocket_scheme}}", "{{websocket_origins}}"];

/**
 * The bodies of a page's inline `<tag>` elements (those without `src=`), found the way the
 * server finds them to hash them (server/src/admin.rs, `inline_hashes`): from each `<tag` to the
 * next `>`, then to the next `</tag>`.
 */
export function inlineBodies(html, tag) {
  const open = `<${tag}`;
  const close = `</${tag}>`;
  const bodies = [];
  let rest = html;
  for (;;) {
    const start = rest.indexOf(open);
    if (start < 0) break;
    const after = rest.slice(start + open.length);
    const endOfTag = after.indexOf(">");
    if (endOfTag < 0) break;
    const attributes = after.slice(0, endOfTag);
    const bodyAndRest = after.slice(endOfTag + 1);
    const end = bodyAndRest.indexOf(close);
    if (end < 0) break;
    if (!attributes.includes("src=")) bodies.push(bodyAndRest.slice(0, end));
    rest = bodyAndRest.slice(end + close.length);
  }
  return bodies;
}

/** The CSP hash sources of a page's inline `<tag>` elements, as the server writes them. */
export function inlineHashes(html, tag) {
  return inlineBodies(html, tag)
    .map((body) => `'sha256-${createHash("sha256").update(body, "utf8").digest("base64")}'`)
    .join(" ");
}

/** The page's HTML, built from the template and the sources. */
export async function buildPage() {
  const result = await build({
    absWorkingDir: root,
    entryPoints: ["page/play.ts"],
    bundle: true,
    write: false,
    format: "iife",
    platform: "browser",
    target: "es2022",
    charset: "utf8",
    legalComments: "none",
    logLevel: "warning",
    banner: {
      js:
        "// The demo page's script: clients/typescript/page/play.ts and the package it imports\n" +
        "// (@gameserver/client), bundled by `npm run page` in clients/typescript. Do not edit here.",
    },
  });
  const script = result.outputFiles[0].text;
  // The script's text must end where the browser and the server's hashing end it, and must not
  // change when the server fills the placeholders in.
  for (const [pattern, why] of [
    [/<\/?script/i, "a <script or </script"],
    [/<\/?style/i, "a <style or </style"],
    [/<!--/, "an HTML comment opener"],
  ]) {
    if (pattern.test(script)) {
      throw new Error(`the bundled script contains ${why}: the page would not parse as one inline script`);
    }
  }
  for (const placeholder of PLACEHOLDERS) {
    if (script.includes(placeholder)) {
      throw new Error(`the bundled script contains the server's placeholder ${placeholder}`);
    }
  }
  const template = readFileSync(templatePath, "utf8");
  const parts = template.split(MARKER);
  if (parts.length !== 2) {
    throw new Error(`${templatePath} must hold ${MARKER} exactly once, not ${parts.length - 1} times`);
  }
  const html = `${parts[0]}<script>\n${script}</script>${parts[1]}`;
  const scripts = inlineBodies(html, "script");
  const styles = inlineBodies(html, "style");
  if (scripts.length !== 1 || scripts[0] !== `\n${script}` || styles.length !== 1) {
    throw new Error(
      `the page must have one inline script (the bundle) and one inline style as the server reads them; ` +
        `it has ${scripts.length} script(s) and ${styles.length} style(s)`,
    );
  }
  for (const forbidden of [/\sstyle="/i, /\son[a-z]+="/i, /<script[^>]*\ssrc=/i, /<link\s/i]) {
    if (forbidden.test(parts[0] + parts[1])) {
      throw new Error(`the template has ${forbidden}, which the page's Content-Security-Policy forbids`);
    }
  }
  return html;
}

/** Writes the page to `outfile`. */
export async function writePage(outfile) {
  const html = await buildPage();
  writeFileSync(outfile, html);
  return html;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const outfile = resolve(process.argv[2] ?? pagePath);
  const html = await writePage(outfile);
  console.log(`${outfile}: ${Buffer.byteLength(html)} bytes, script ${inlineHashes(html, "script")}`);
}
