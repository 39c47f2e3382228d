/**
 * The demo page's rules that need no document: where it may connect, and how it shows the demo
 * game's events to people. Tested in Node (test/unit/page.test.ts); page/play.ts applies them.
 */

import { decodeDemoEvent } from "../src/demo.js";

/** What the server wrote into the page's meta tags, and where the page was opened. */
export interface PageAddress {
  /** `websocket-port`: the WebSocket listener's port ("{{websocket_port}}" if not served). */
  readonly port: string;
  /** `websocket-scheme`: `ws`, or `wss` when the server has `[tls]`. */
  readonly scheme: string;
  /** `websocket-origins`: further origins the operator allows, separated by spaces. */
  readonly origins: string;
  /** `location.hostname` of the page. */
  readonly hostname: string;
  /** `?ws=`, when the link has one. */
  readonly given: string | null;
}

/**
 * Where to connect: this page's host at the port the server wrote in, or `?ws=URL` when it names
 * that same server or an origin the operator allowed (`admin.page_websocket_origins`). A link
 * cannot send this page's `Hello`, token and all, anywhere else.
 */
export function websocketUrl(page: PageAddress): { readonly url: string } | { readonly refused: string } {
  if (!/^[0-9]+$/.test(page.port) || !/^wss?$/.test(page.scheme) || !page.hostname) {
    return { refused: "no WebSocket address: open this page from the server" };
  }
  // `location.hostname` keeps an IPv6 address in its brackets; a bare one gets them here.
  const host =
    page.hostname.includes(":") && !page.hostname.startsWith("[") ? `[${page.hostname}]` : page.hostname;
  const own = `${page.scheme}://${host}:${page.port}`;
  if (!page.given) {
    return { url: `${own}/` };
  }
  let url: URL;
  try {
    url = new URL(page.given);
  } catch {
    return { refused: `?ws=${page.given} is not a URL` };
  }
  // Origins compared as URLs see them: ws://host:80 and ws://host are one.
  const origin = `${url.protocol}//${url.host}`;
  const allowed = page.origins.split(" ").map(originOf);
  if (origin !== originOf(own) && !allowed.includes(origin)) {
    return {
      refused:
        `?ws= names ${origin}, which is not this server (${own}); ` +
        "an operator can allow it with admin.page_websocket_origins",
    };
  }
  return { url: url.href };
}

/** `scheme://host[:port]` of a URL, its default port left out; `null` for what is not a URL. */
function originOf(text: string): string | null {
  try {
    const url = new URL(text);
    return `${url.protocol}//${url.host}`;
  } catch {
    return null;
  }
}

/** A player id for a visitor who did not choose one: `web-` and four hex digits. */
export function randomPlayer(random: Uint8Array): string {
  return `web-${Array.from(random.subarray(0, 2), (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

const text = new TextDecoder();

/** One line for people about a demo event (PROTOCOL.md, "Demo game payloads"); `invalid` when
 * the payload is not one (the page counts those). */
export function describeDemoPayload(payload: Uint8Array): { readonly line: string; readonly invalid: boolean } {
  try {
    const event = decodeDemoEvent(payload);
    switch (event.tag) {
      case "relay":
        return {
          line: `relay: ${event.from} input ${event.inputSeq} ${JSON.stringify(text.decode(event.data))}`,
          invalid: false,
        };
      case "state":
        return {
          line: `state: tick ${event.tick}, ${event.members} member(s), ${event.inputs} input(s)`,
          invalid: false,
        };
      case "presence":
        return { line: `presence: ${event.player} ${event.joined ? "joined" : "left"}`, invalid: false };
    }
  } catch (error) {
    return {
      line: `invalid demo payload of ${payload.length} bytes (${error instanceof Error ? error.message : String(error)})`,
      invalid: true,
    };
  }
}
