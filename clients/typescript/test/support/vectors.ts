/**
 * Reads the test vectors out of PROTOCOL.md itself ("Test vectors" and "Negative test
 * vectors"): each is a `### name` heading, a paragraph saying who sends it (or which side
 * rejects it, and with which error), and a fenced `hex` block.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";

import { repoRoot } from "./paths.js";

export interface Vector {
  readonly name: string;
  /** The prose between the heading and the bytes. */
  readonly text: string;
  readonly bytes: Uint8Array;
}

/** The vectors of one `## heading` section of PROTOCOL.md, in order. */
export function vectorsOf(section: "Test vectors" | "Negative test vectors"): Vector[] {
  const doc = readFileSync(join(repoRoot, "PROTOCOL.md"), "utf8");
  const start = doc.indexOf(`\n## ${section}\n`);
  if (start < 0) {
    throw new Error(`PROTOCOL.md has no "## ${section}" section`);
  }
  const rest = doc.slice(start + section.length + 5);
  const next = rest.search(/\n## /);
  const body = next < 0 ? rest : rest.slice(0, next);
  const vectors: Vector[] = [];
  for (const part of body.split(/\n### /).slice(1)) {
    const name = part.slice(0, part.indexOf("\n")).trim();
    const fence = /```hex\n([\s\S]*?)```/.exec(part);
    if (fence === null) {
      throw new Error(`vector ${name} has no hex block`);
    }
    const text = part.slice(part.indexOf("\n"), fence.index).replace(/\s+/g, " ").trim();
    vectors.push({ name, text, bytes: hex(fence[1]!) });
  }
  return vectors;
}

/** Bytes from hexadecimal pairs; spaces and line breaks mean nothing. */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, "");
  if (!/^([0-9a-f]{2})*$/i.test(digits)) {
    throw new Error(`not hexadecimal bytes: ${text}`);
  }
  return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}
