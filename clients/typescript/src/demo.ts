/**
 * The payloads of the demo game "rooms" (PROTOCOL.md, "Demo game payloads"): what its events
 * carry. The protocol treats payloads as opaque bytes; a real game has its own format. An
 * invalid payload is the demo client's problem, not a protocol error: count it and skip it.
 */

import { MAX_PLAYER_ID_BYTES } from "./codec.js";

/** Tag 1: a player's input, relayed to every member of the room, sender included. */
export interface Relay {
  readonly tag: "relay";
  readonly from: string;
  /** The `seq` of the relayed `Input` in the sender's stream. */
  readonly inputSeq: number;
  readonly data: Uint8Array;
}

/** Tag 2: the room's state, on the tick after anything changed. */
export interface State {
  readonly tag: "state";
  readonly tick: bigint;
  readonly members: number;
  /** Inputs the room received since the previous `State`. */
  readonly inputs: number;
}

/** Tag 3: a player entered or left the room (with the game's `announce_presence`). */
export interface Presence {
  readonly tag: "presence";
  readonly joined: boolean;
  readonly player: string;
}

export type DemoEvent = Relay | State | Presence;

/** A payload that is not a demo event. */
export class InvalidDemoEvent extends Error {
  constructor(message: string) {
    super(`invalid demo event: ${message}`);
    this.name = "InvalidDemoEvent";
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** Decodes an `Event` payload of the demo game. */
export function decodeDemoEvent(payload: Uint8Array): DemoEvent {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  let at = 0;
  const need = (n: number, what: string): void => {
    if (at + n > payload.length) {
      throw new InvalidDemoEvent(`${what} runs past the end`);
    }
  };
  const name = (what: string): string => {
    need(2, what);
    const n = view.getUint16(at);
    at += 2;
    if (n > MAX_PLAYER_ID_BYTES) {
      throw new InvalidDemoEvent(`${what} is ${n} bytes, over ${MAX_PLAYER_ID_BYTES}`);
    }
    need(n, what);
    try {
      return decoder.decode(payload.subarray(at, (at += n)));
    } catch {
      throw new InvalidDemoEvent(`${what} is not valid UTF-8`);
    }
  };
  need(1, "tag");
  const tag = payload[at++];
  let event: DemoEvent;
  switch (tag) {
    case 1: {
      const from = name("relay sender id");
      need(8, "relay input seq");
      const inputSeq = Number(view.getBigUint64(at));
      at += 8;
      return { tag: "relay", from, inputSeq, data: payload.slice(at) };
    }
    case 2:
      need(16, "state");
      event = {
        tag: "state",
        tick: view.getBigUint64(1),
        members: view.getUint32(9),
        inputs: view.getUint32(13),
      };
      at = 17;
      break;
    case 3: {
      need(1, "presence flag");
      const flag = payload[at++];
      if (flag !== 0 && flag !== 1) {
        throw new InvalidDemoEvent("presence flag is neither 0 nor 1");
      }
      event = { tag: "presence", joined: flag === 1, player: name("presence player id") };
      break;
    }
    default:
      throw new InvalidDemoEvent(`unknown tag ${tag}`);
  }
  if (at !== payload.length) {
    throw new InvalidDemoEvent("trailing bytes after the last field");
  }
  return event;
}

/** Encodes a demo event (the game's side; for tests). */
export function encodeDemoEvent(event: DemoEvent): Uint8Array {
  const bytes: number[] = [];
  const u16 = (v: number): void => void bytes.push((v >>> 8) & 0xff, v & 0xff);
  const u32 = (v: number): void => (u16(v >>> 16), u16(v & 0xffff));
  const u64 = (v: bigint): void => (u32(Number(v >> 32n)), u32(Number(v & 0xffff_ffffn)));
  const text = (s: string): void => {
    const raw = encoder.encode(s);
    u16(raw.length);
    bytes.push(...raw);
  };
  switch (event.tag) {
    case "relay":
      bytes.push(1);
      text(event.from);
      u64(BigInt(event.inputSeq));
      bytes.push(...event.data);
      break;
    case "state":
      bytes.push(2);
      u64(event.tick);
      u32(event.members);
      u32(event.inputs);
      break;
    case "presence":
      bytes.push(3, event.joined ? 1 : 0);
      text(event.player);
      break;
  }
  return Uint8Array.from(bytes);
}
