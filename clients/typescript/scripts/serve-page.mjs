// Serves the demo page (games/rooms/static/play.html, or the file given) the way the server's
// admin port serves /play, for working on the page without rebuilding the server (which compiles
// the page in): the placeholders filled in, the same Content-Security-Policy (its inline script
// and style by hash, connections only to the WebSocket port on the page's own host and the
// origins allowed) and the same headers (server/src/admin.rs, `Pages::new`, `Page::policy`).
// Point it at a running server's WebSocket port:
//
//   node scripts/serve-page.mjs --websocket-port 7778 [--scheme ws] [--origins "ws://h:1 ..."]
//                               [--listen 127.0.0.1:0] [--file play.html]
//
// then open http://127.0.0.1:<port>/play, as on the server's own admin port.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

import { inlineHashes, pagePath } from "./page.mjs";

/** The page as the server renders it once at start. */
export function renderPage(template, { websocketPort, scheme = "ws", origins = [] }) {
  const html = template
    .replaceAll("{{websocket_port}}", String(websocketPort))
    .replaceAll("{{websocket_scheme}}", scheme)
    .replaceAll("{{websocket_origins}}", origins.join(" "));
  return {
    html,
    scripts: inlineHashes(html, "script"),
    styles: inlineHashes(html, "style"),
    scheme,
    port: websocketPort,
    origins: origins.join(" "),
  };
}

/** The host part of a `Host` header, without the port. */
function hostPart(authority) {
  if (authority.startsWith("[")) return authority.slice(1).split("]")[0];
  const colon = authority.lastIndexOf(":");
  return colon < 0 ? authority : authority.slice(0, colon);
}

function plainHost(host) {
  return host.length > 0 && host.length <= 253 && /^[A-Za-z0-9.-]+$/.test(host);
}

/** The Content-Security-Policy of the page as served to `host` (the request's `Host`). */
export function pagePolicy(page, host) {
  const name = host === undefined ? undefined : hostPart(host);
  const own = name !== undefined && plainHost(name) ? `${page.scheme}://${name}:${page.port}` : `${page.scheme}://*:${page.port}`;
  return (
    `default-src 'none'; script-src ${page.scripts || "'none'"}; style-src ${page.styles || "'none'"}; ` +
    `img-src 'self' data:; connect-src ${own} ${page.origins}; base-uri 'none'; form-action 'none'; ` +
    "frame-ancestors 'none'"
  );
}

/** Serves `page` at /play on `listen` ("host:port"); resolves with the server once listening. */
export function servePage(page, listen = "127.0.0.1:0") {
  const colon = listen.lastIndexOf(":");
  const server = createServer((request, response) => {
    const common = {
      "x-frame-options": "DENY",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "cross-origin-resource-policy": "same-origin",
    };
    const path = new URL(request.url ?? "/", "http://page").pathname;
    if (path !== "/play" || (request.method !== "GET" && request.method !== "HEAD")) {
      response.writeHead(404, { ...common, "content-security-policy": "default-src 'none'" }).end("not found\n");
      return;
    }
    response.writeHead(200, {
      ...common,
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "content-security-policy": pagePolicy(page, request.headers.host),
    });
    response.end(request.method === "HEAD" ? undefined : page.html);
  });
  return new Promise((resolve) => server.listen(Number(listen.slice(colon + 1)), listen.slice(0, colon), () => resolve(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      "websocket-port": { type: "string" },
      scheme: { type: "string", default: "ws" },
      origins: { type: "string", default: "" },
      listen: { type: "string", default: "127.0.0.1:0" },
      file: { type: "string", default: pagePath },
    },
  });
  if (values["websocket-port"] === undefined) {
    console.error("usage: node scripts/serve-page.mjs --websocket-port PORT [--scheme ws|wss] [--origins ...] [--listen HOST:PORT] [--file HTML]");
    process.exit(2);
  }
  const page = renderPage(readFileSync(values.file, "utf8"), {
    websocketPort: Number(values["websocket-port"]),
    scheme: values.scheme,
    origins: values.origins.split(" ").filter((o) => o !== ""),
  });
  const server = await servePage(page, values.listen);
  const { address, port } = server.address();
  console.log(`serving the page at http://${address}:${port}/play (script ${page.scripts})`);
}
