/**
 * Two network namespaces joined by a veth pair (shared/NETWORK-FAULTS.md): the server in one,
 * a client in the other, and a cable to pull (`ip link set down`) between them. Names are unique
 * per process and pair; `remove` deletes both namespaces (the veth pair goes with them), and
 * must run even when the test fails.
 */

import { execFileSync } from "node:child_process";

let pairs = 0;

export class NetnsPair {
  static readonly SERVER_ADDR = "10.200.0.1";
  static readonly CLIENT_ADDR = "10.200.0.2";

  readonly server: string;
  readonly client: string;
  private readonly serverLink: string;
  private readonly clientLink: string;

  constructor() {
    const tag = `${process.pid % 100000}x${++pairs}`;
    this.server = `gsts-${tag}-srv`;
    this.client = `gsts-${tag}-cli`;
    this.serverLink = `gs${tag}s`;
    this.clientLink = `gs${tag}c`;
    try {
      ip("netns", "add", this.server);
      ip("netns", "add", this.client);
      ip("link", "add", this.serverLink, "netns", this.server, "type", "veth", "peer", "name", this.clientLink, "netns", this.client);
      ip("-n", this.server, "addr", "add", `${NetnsPair.SERVER_ADDR}/30`, "dev", this.serverLink);
      ip("-n", this.client, "addr", "add", `${NetnsPair.CLIENT_ADDR}/30`, "dev", this.clientLink);
      for (const [ns, link] of [
        [this.server, this.serverLink],
        [this.client, this.clientLink],
      ] as const) {
        ip("-n", ns, "link", "set", "lo", "up");
        ip("-n", ns, "link", "set", link, "up");
      }
    } catch (error) {
      this.remove();
      throw error;
    }
  }

  /** Pulls the client's cable: nothing passes, nothing is said. */
  pull(): void {
    ip("-n", this.client, "link", "set", this.clientLink, "down");
  }

  /** Plugs it back. */
  plug(): void {
    ip("-n", this.client, "link", "set", this.clientLink, "up");
  }

  remove(): void {
    for (const ns of [this.client, this.server]) {
      try {
        ip("netns", "del", ns);
      } catch {
        // Not created, or gone already.
      }
    }
  }
}

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}
