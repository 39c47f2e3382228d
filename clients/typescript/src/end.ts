/**
 * How a connection ended, what that means for the session, and what to do next: one table
 * (docs/CLIENT.md, "How a connection ends"; PROTOCOL.md, "Bye codes"), read by the core, the
 * driver and the game.
 */

import type { ByeCode } from "./codec.js";

/** A connection that broke without a `Bye`, named as the server names the same event. */
export type TransportCause =
  /** Nothing listens (ECONNREFUSED), or a proxy in front answered the upgrade with a 5xx. */
  | "refused"
  /** The stream ended between two frames (the server's FIN, or a close frame, without a `Bye`). */
  | "peer_eof"
  /** The stream ended inside a frame. */
  | "truncated_frame"
  /** The server closed or reset the connection during the TLS handshake or the WebSocket
   * upgrade: how it turns a connection away over TLS and WebSocket (full, over its memory
   * budget, limiting this address). No session was touched. */
  | "closed_while_opening"
  /** ECONNRESET (or ECONNABORTED: the local socket was destroyed under the client). */
  | "peer_reset"
  /** EPIPE: written after the connection closed. */
  | "broken_pipe"
  /** ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, or a connect or handshake that did not finish in
   * time. */
  | "timed_out"
  /** Any other socket error. */
  | "io";

/** How one connection to the server ended, seen from the client. */
export type End =
  /** The server said `Bye` (the text is for logs and people). */
  | { readonly kind: "bye"; readonly code: ByeCode; readonly text: string }
  /** The connection broke underneath: no `Bye` came. */
  | { readonly kind: "transport"; readonly cause: TransportCause; readonly detail: string }
  /** Nothing came from the server for the idle timeout it announced in `Welcome`. */
  | { readonly kind: "server_silent"; readonly afterMs: number }
  /** The server sent bytes that are not this protocol, or a message out of place. */
  | { readonly kind: "protocol"; readonly detail: string }
  /** The TLS handshake or WebSocket upgrade failed on what the server presented (an untrusted
   * certificate, another name, an HTTP answer other than 101 or 5xx): trying again meets the
   * same answer. */
  | { readonly kind: "opening"; readonly detail: string }
  /** The client closed. */
  | { readonly kind: "quit" };

export function transportEnd(cause: TransportCause, detail = ""): End {
  return { kind: "transport", cause, detail };
}

/** Why a session is over for good. */
export type Lost =
  /** The server ended it on purpose (`Bye` with this code), or the connection could not be
   * opened and trying again cannot help. */
  | { readonly kind: "ended"; readonly end: End }
  /** The connection broke and the server refused the resume (a restarted server knows no
   * token; the grace period passed): the server's words. */
  | { readonly kind: "resume_refused"; readonly text: string }
  /** The connection broke and the server offers no resume (an all-zero token). */
  | { readonly kind: "not_resumable"; readonly end: End }
  /** No connection could be made for the configured number of attempts (the last failure). */
  | { readonly kind: "gave_up"; readonly end: End };

/**
 * What follows from an end:
 * - `resume`: connect again and take the session back (a break; the server parks the session);
 * - `retry`: connect again; the session, if any, was not touched (nothing listens, the server
 *   is full, the connection was turned away while opening);
 * - `new_session`: the session is over, and a fresh one may start (after `delayMs`);
 * - `give_up`: the session is over and trying again by itself would not help: tell the player
 *   (`kicked`, `replaced`, `auth_failed`: a new token first, `join_refused`: another room, ...);
 * - `done`: the client quit.
 */
export type Action = "resume" | "retry" | "new_session" | "give_up" | "done";

/** What to do after a connection ended or a session was lost, and why. */
export interface Decision {
  readonly action: Action;
  /** For `new_session`: the least wait before it (a draining server asks for a few seconds). */
  readonly delayMs?: number;
  /** For people: what PROTOCOL.md says to do. */
  readonly why: string;
}

/** The server's close reason for the same event, where there is one (`peer_reset`,
 * `idle_timeout`, `client_quit`, ...): what the server most likely recorded. */
export type CloseReason = string;

/** What each `Bye` code asks of a client (PROTOCOL.md, "Bye codes"). */
const BYE_DECISIONS: Readonly<Record<ByeCode, Decision>> = {
  client_quit: { action: "done", why: "the session ended as asked" },
  server_shutdown: {
    action: "new_session",
    delayMs: 2000,
    why: "the server is stopping: reconnect after a few seconds, to this or another server",
  },
  kicked: { action: "give_up", why: "an operator removed the player: tell the player" },
  replaced: {
    action: "give_up",
    why: "the same player connected elsewhere: two clients of one player would keep replacing each other",
  },
  server_full: { action: "retry", why: "the server is at a limit: retry with backoff" },
  protocol_error: { action: "give_up", why: "a bug in the client: log the text" },
  idle_timeout: { action: "resume", why: "the server heard nothing for its idle timeout: resume" },
  slow_consumer: {
    action: "resume",
    why: "the client read too slowly: resume (if the server parks slow consumers)",
  },
  rate_limited: {
    action: "new_session",
    delayMs: 1000,
    why: "too many frames per second: reconnect after a backoff and send fewer",
  },
  auth_failed: { action: "give_up", why: "get a new token from the game's backend, then start a new session" },
  version_mismatch: { action: "give_up", why: "this client speaks another protocol version: update it" },
  handshake_timeout: { action: "retry", why: "no Hello in time: reconnect and send Hello at once" },
  resume_rejected: { action: "new_session", why: "the session is gone on the server: start a fresh one" },
  join_refused: {
    action: "give_up",
    why: "the room refused the player: choose another room (or let the server choose)",
  },
  game_ended: { action: "give_up", why: "the game ended the session by its rules" },
};

/** What follows from how a connection ended, before the session is consulted. */
export function decide(end: End): Decision {
  switch (end.kind) {
    case "bye":
      return BYE_DECISIONS[end.code];
    case "transport":
      return end.cause === "refused" || end.cause === "closed_while_opening"
        ? { action: "retry", why: "no connection was made: try again with backoff" }
        : { action: "resume", why: "the connection broke: the server parks the session" };
    case "server_silent":
      return { action: "resume", why: "the server or the path went silent: reconnect and resume" };
    case "protocol":
      return { action: "give_up", why: "the server sent bytes that are not the protocol" };
    case "opening":
      return { action: "give_up", why: "the server's certificate or answer was refused: trying again cannot help" };
    case "quit":
      return { action: "done", why: "the client closed" };
  }
}

/** What follows from a lost session: a new one, or tell the player. */
export function decideLost(lost: Lost): Decision {
  switch (lost.kind) {
    case "ended":
      return decide(lost.end);
    case "resume_refused":
      return BYE_DECISIONS.resume_rejected;
    case "not_resumable":
      return { action: "new_session", why: "the server offers no resume: start a fresh session" };
    case "gave_up":
      return { action: "give_up", why: "no connection could be made for the configured attempts" };
  }
}

/** True when the session may still be parked on the server. */
export function isResumable(end: End): boolean {
  return decide(end).action === "resume";
}

/** The server's name for the same event (see docs/CLIENT.md), or `null` where it has none. */
export function closeReason(end: End): CloseReason | null {
  switch (end.kind) {
    case "bye":
      if (end.code === "server_full") {
        return null;
      }
      return end.code === "version_mismatch" ? "protocol_error" : end.code;
    case "transport":
      switch (end.cause) {
        case "refused":
        case "closed_while_opening":
          return null;
        case "timed_out":
          return "tcp_timeout";
        case "io":
          return "io_error";
        default:
          return end.cause;
      }
    case "server_silent":
      return "idle_timeout";
    case "quit":
      return "client_quit";
    case "protocol":
    case "opening":
      return null;
  }
}

/** One line for people. */
export function describeEnd(end: End): string {
  switch (end.kind) {
    case "bye":
      return `the server said Bye{${end.code}}${end.text ? `: ${end.text}` : ""}`;
    case "transport":
      return `${end.cause.replace(/_/g, " ")}${end.detail ? `: ${end.detail}` : ""}`;
    case "server_silent":
      return `the server sent nothing for ${end.afterMs} ms`;
    case "protocol":
      return `protocol error: ${end.detail}`;
    case "opening":
      return `the connection could not be opened: ${end.detail}`;
    case "quit":
      return "the client closed the session";
  }
}

/** One line for people. */
export function describeLost(lost: Lost): string {
  switch (lost.kind) {
    case "ended":
      return `the session ended: ${describeEnd(lost.end)}`;
    case "resume_refused":
      return `the server could not resume the session: ${lost.text}`;
    case "not_resumable":
      return `the connection broke and the session cannot be resumed: ${describeEnd(lost.end)}`;
    case "gave_up":
      return `gave up reconnecting: ${describeEnd(lost.end)}`;
  }
}

/** The error a promise of the client rejects with when the session is lost. */
export class SessionLost extends Error {
  constructor(
    readonly lost: Lost,
    readonly decision: Decision,
  ) {
    super(describeLost(lost));
    this.name = "SessionLost";
  }
}

/** Classifies a socket error by its errno name (Node's `error.code`). */
export function transportOfErrno(code: string | undefined, detail: string): End {
  switch (code) {
    case "ECONNREFUSED":
      return transportEnd("refused", detail);
    case "ECONNRESET":
    case "ECONNABORTED":
      return transportEnd("peer_reset", detail);
    case "EPIPE":
      return transportEnd("broken_pipe", detail);
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return transportEnd("timed_out", detail);
    default:
      return transportEnd("io", detail);
  }
}
