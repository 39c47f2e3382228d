/**
 * The demo page of the game "rooms" (`/play` on the server's admin port): a player in the
 * browser, on this package's `GameClient` over the browser's WebSocket. The client answers
 * pings and keeps its heartbeat, reconnects with backoff, resumes the session and resends the
 * inputs the server did not apply; this page plays (an input every second and on a button) and
 * shows what happens.
 *
 * `npm run page` bundles this file, with the package, into the one inline script of
 * games/rooms/static/play.html (from the template play.src.html beside it); the server
 * compiles that file in and allows only that script, by its hash.
 *
 * `window.game` is what a test (or a curious player in the console) reads and drives; the
 * server's browser tests (tests/tests/browser.rs) rely on its fields and their meaning.
 */

import { byeCodeNumber, describeEnd, describeLost, type End, GameClient, InputError } from "../src/index.js";
import { describeDemoPayload, randomPlayer, websocketUrl } from "./rules.js";

/** What the page shows and tells: the client's state in the page's words. */
type PageState = "connecting" | "playing" | "reconnecting" | "leaving" | "closed";

const INPUT_EVERY_MS = 1000;
const SHOWN_EVENTS = 8;
const SHOWN_LOG = 14;

const params = new URLSearchParams(location.search);
const encoder = new TextEncoder();

const player = params.get("player") || randomPlayer(crypto.getRandomValues(new Uint8Array(2)));
const wantedRoom = params.get("room") || "";
const authToken = params.get("token");

/** The server's last `Bye`: its number, name and text. */
interface LastBye {
  readonly code: number;
  readonly name: string;
  readonly text: string;
}

const view = {
  reason: "",
  /** The session's id as a decimal string, once welcomed. */
  sessionId: null as string | null,
  room: "",
  /** The current connection took the session back after a break. */
  resumed: false,
  resumes: 0,
  /** Events of this session the page received: each once, so as many as `lastEventSeq`. */
  eventsReceived: 0,
  lastEventSeq: 0,
  /** Inputs of this session the page sent, and the highest the server applied. */
  inputsSent: 0,
  inputsApplied: 0,
  invalidPayloads: 0,
  lastBye: null as LastBye | null,
  url: "",
  lastEvents: [] as string[],
  log: [] as string[],
};

let client: GameClient | null = null;
/** The page stopped without a client (a link to another server, a name the server refuses). */
let stopped = false;
/** What the closed client's reason should say when it got no `Bye`. */
let quitReason = "left";
/** The last `End` whose `Bye` was noted, so that one `Bye` told twice is noted once. */
let lastByeEnd: End | null = null;

function pageState(): PageState {
  if (client === null) {
    return stopped ? "closed" : "connecting";
  }
  switch (client.state) {
    case "idle":
    case "connecting":
      return "connecting";
    case "live":
      return "playing";
    case "reconnecting":
      return "reconnecting";
    case "leaving":
      return "leaving";
    case "lost":
    case "closed":
      return "closed";
  }
}

/** Notes the server's `Bye`, when that is how a connection ended. */
function heard(end: End): void {
  if (end.kind !== "bye" || end === lastByeEnd) {
    return;
  }
  lastByeEnd = end;
  view.lastBye = { code: byeCodeNumber(end.code), name: end.code, text: end.text };
  note(`Bye{${end.code}}${end.text ? `: ${end.text}` : ""}`);
}

/** Starts playing on `url`. */
function play(url: string): void {
  let game: GameClient;
  try {
    game = new GameClient({ url, playerId: player, room: wantedRoom, authToken, maxAttempts: null });
  } catch (error) {
    stop(`cannot play: ${error instanceof Error ? error.message : String(error)}`);
    return;
  }
  client = game;
  game.on("session", ({ sessionId, room }) => {
    view.sessionId = sessionId.toString();
    view.room = room;
    view.resumed = false;
    view.eventsReceived = 0;
    view.lastEventSeq = 0;
    view.inputsSent = 0;
    view.inputsApplied = 0;
    view.lastEvents = [];
    view.reason = "";
    note(`welcome: session ${view.sessionId} in ${room}`);
  });
  game.on("resume", ({ sessionId, room, resent, downMs }) => {
    view.room = room;
    view.resumed = true;
    view.resumes += 1;
    view.reason = "resumed";
    note(`resumed session ${sessionId} in ${room} after ${Math.round(downMs)} ms; resent ${resent} input(s)`);
  });
  game.on("event", ({ seq, payload }) => {
    if (seq !== view.lastEventSeq + 1) {
      note(`event ${seq} follows ${view.lastEventSeq}`);
    }
    view.lastEventSeq = seq;
    view.eventsReceived += 1;
    const { line, invalid } = describeDemoPayload(payload);
    if (invalid) {
      view.invalidPayloads += 1;
    }
    view.lastEvents.unshift(`#${seq} ${line}`);
    view.lastEvents.length = Math.min(view.lastEvents.length, SHOWN_EVENTS);
  });
  game.on("ack", ({ seq }) => {
    view.inputsApplied = seq;
  });
  game.on("joined", ({ room }) => {
    view.room = room;
    note(`joined ${room}`);
  });
  game.on("joinRefused", ({ room, text }) => note(`room ${room} refused: ${text}`));
  game.on("drop", ({ end }) => {
    heard(end);
    view.reason = `connection lost: ${describeEnd(end)}`;
    note(view.reason);
  });
  game.on("reconnecting", ({ attempt, delayMs, end }) => {
    heard(end);
    if (attempt > 1) {
      view.reason = `attempt ${attempt - 1} failed: ${describeEnd(end)}`;
    }
    note(`connecting again in ${Math.round(delayMs)} ms (attempt ${attempt})`);
  });
  game.on("end", ({ lost, renewing }) => {
    if (lost.kind !== "resume_refused") {
      heard(lost.end);
    }
    view.reason = describeLost(lost);
    note(`${view.reason}${renewing ? "; starting a new session" : ""}`);
  });
  game.on("closed", ({ end }) => {
    heard(end);
    if (end.kind === "bye") {
      view.reason = end.code;
    } else if (end.kind === "quit") {
      view.reason = quitReason;
    } else {
      view.reason = `left (${describeEnd(end)})`;
    }
    note(`closed: ${view.reason}`);
  });
  const names = ["session", "resume", "event", "ack", "joined", "joinRefused", "drop", "reconnecting", "end", "closed"] as const;
  for (const name of names) {
    game.on(name, renderSoon);
  }
  note(`connecting to ${url}`);
  // Losses and the close are told by the events above.
  game.connect().catch(() => undefined);
}

/** The page stops before it could play, and says why. */
function stop(reason: string): void {
  stopped = true;
  view.reason = reason;
  note(`closed: ${reason}`);
  render();
}

/** Leaves the game: `Bye{client_quit}`, then the server's `Ack`, `Bye` and close frame.
 * Resolves with the page's reason for closing (`client_quit` when the server answered). */
async function leave(): Promise<string> {
  const game = client;
  if (game === null || game.state === "closed") {
    return view.reason;
  }
  if (game.state === "lost") {
    // Closed already, for the reason shown: only release the client.
    quitReason = view.reason;
  } else if (game.state === "live") {
    quitReason = "left without the server's answer";
  }
  const left = game.leave();
  if (game.state === "leaving") {
    view.reason = "waiting for the server's Bye";
    note("Bye{client_quit} sent; waiting for the server");
  }
  render();
  await left;
  return view.reason;
}

/** Sends one input while playing; false otherwise. */
function sendInput(what: string): boolean {
  if (client === null || pageState() !== "playing") {
    return false;
  }
  const n = view.inputsSent + 1;
  try {
    client.input(encoder.encode(`${what} ${n}`));
  } catch (error) {
    if (!(error instanceof InputError)) {
      throw error;
    }
    note(`input not sent: ${error.message}`);
    renderSoon();
    return false;
  }
  view.inputsSent = n;
  renderSoon();
  return true;
}

// ---- The display.

function $(id: string): HTMLElement {
  const element = document.getElementById(id);
  if (element === null) {
    throw new Error(`the page has no #${id}`);
  }
  return element;
}

function note(line: string): void {
  view.log.unshift(`${new Date().toLocaleTimeString()} ${line}`);
  view.log.length = Math.min(view.log.length, SHOWN_LOG);
}

function fill(list: HTMLElement, lines: readonly string[]): void {
  list.replaceChildren(
    ...lines.map((line) => {
      const item = document.createElement("li");
      item.textContent = line;
      return item;
    }),
  );
}

let renderQueued = false;

/** Renders once the current batch of the client's events is told. */
function renderSoon(): void {
  if (!renderQueued) {
    renderQueued = true;
    queueMicrotask(render);
  }
}

function render(): void {
  renderQueued = false;
  const state = pageState();
  $("state").textContent = state;
  $("state").className = `state ${state}`;
  $("resumed").hidden = !(view.resumed && state === "playing");
  $("reason").textContent = view.reason && view.reason !== "resumed" ? view.reason : "";
  $("player").textContent = player;
  $("session").textContent = view.sessionId ?? "-";
  $("room").textContent = view.room || "-";
  $("url").textContent = view.url || "-";
  $("events").textContent = `${view.eventsReceived} (last seq ${view.lastEventSeq})`;
  $("inputs").textContent = `${view.inputsSent} / ${view.inputsApplied}`;
  $("resumes").textContent = String(view.resumes);
  const rtt = client?.rtt ?? null;
  $("rtt").textContent = rtt === null ? "-" : `${rtt.toFixed(1)} ms`;
  ($("send") as HTMLButtonElement).disabled = state !== "playing";
  ($("leave") as HTMLButtonElement).disabled = state === "closed" || state === "leaving";
  fill($("last-events"), view.lastEvents);
  fill($("log"), view.log);
}

$("send").addEventListener("click", () => sendInput("click"));
$("leave").addEventListener("click", () => void leave());

setInterval(() => {
  if (pageState() === "playing") {
    sendInput("auto");
    client?.acknowledge();
  }
  render();
}, INPUT_EVERY_MS);

// What a test (or a curious player in the console) can read and drive.
const snapshot = () => ({
  state: pageState(),
  reason: view.reason,
  sessionId: view.sessionId,
  player,
  room: view.room,
  resumed: view.resumed,
  resumes: view.resumes,
  eventsReceived: view.eventsReceived,
  lastEventSeq: view.lastEventSeq,
  inputsSent: view.inputsSent,
  inputsApplied: view.inputsApplied,
  invalidPayloads: view.invalidPayloads,
  lastBye: view.lastBye,
});

(window as unknown as { game: unknown }).game = Object.freeze({
  get state() {
    return pageState();
  },
  get reason() {
    return view.reason;
  },
  get sessionId() {
    return view.sessionId;
  },
  get player() {
    return player;
  },
  get room() {
    return view.room;
  },
  get resumed() {
    return view.resumed;
  },
  get resumes() {
    return view.resumes;
  },
  get eventsReceived() {
    return view.eventsReceived;
  },
  get inputsSent() {
    return view.inputsSent;
  },
  get inputsApplied() {
    return view.inputsApplied;
  },
  get lastBye() {
    return view.lastBye;
  },
  leave,
  input: () => sendInput("click"),
  snapshot,
});

const meta = (name: string): string =>
  document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content ?? "";
const address = websocketUrl({
  port: meta("websocket-port"),
  scheme: meta("websocket-scheme"),
  origins: meta("websocket-origins"),
  hostname: location.hostname,
  given: params.get("ws"),
});
if ("refused" in address) {
  stop(address.refused);
} else {
  view.url = address.url;
  play(address.url);
  render();
}
