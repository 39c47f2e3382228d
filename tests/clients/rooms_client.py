#!/usr/bin/env python3
"""A standard-library-only client for the game server's wire protocol, version 3.

Written from PROTOCOL.md alone, as a test of that document. It plays one full session against a
server running the demo game "rooms":

  Hello -> Welcome; a client Ping -> the matching Pong; Join -> Joined; N Inputs, each relayed back
  as a demo Relay event; Ack of the events; Bye{client_quit} -> the server's Ack and Bye -> end of
  stream; close.

Every server Ping is answered with a Pong (until the client has sent its Bye). At the end it prints
one JSON object with what it observed on stdout and exits 0 if every check passed; otherwise it
names each failure on stderr and exits 1.

Usage:
  rooms_client.py 127.0.0.1:7777 --player ann --room lobby --join arena-2 --inputs 10
  rooms_client.py 127.0.0.1:7777 --player ann --room vault --options password=x --join vault-2 \
      --join-options password=x
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

# --- constants (PROTOCOL.md, "Constants") -------------------------------------------------------

PROTOCOL_VERSION = 3
HEADER_LEN = 4
DEFAULT_MAX_FRAME_BYTES = 65536
MAX_PLAYER_ID_BYTES = 64
MAX_ROOM_BYTES = 64
MAX_AUTH_TOKEN_BYTES = 512
RESUME_TOKEN_LEN = 16
MAX_OPTIONS_BYTES = 1024  # join options, in Hello and Join
MAX_HELLO_BODY = 1699  # the server reads no longer frame before its Hello
AUTO_ROOM_PREFIX = "auto-"  # automatic rooms: the server's to give, never a client's to name

K_HELLO, K_WELCOME, K_PING, K_PONG = 0x01, 0x02, 0x03, 0x04
K_INPUT, K_EVENT, K_ACK, K_BYE, K_JOIN, K_JOINED = 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A
K_JOIN_REFUSED = 0x0B
KIND_NAMES = {
    K_HELLO: "Hello", K_WELCOME: "Welcome", K_PING: "Ping", K_PONG: "Pong", K_INPUT: "Input",
    K_EVENT: "Event", K_ACK: "Ack", K_BYE: "Bye", K_JOIN: "Join", K_JOINED: "Joined",
    K_JOIN_REFUSED: "JoinRefused",
}
CLIENT_TO_SERVER_ONLY = {K_HELLO, K_INPUT, K_JOIN}

BYE_NAMES = {
    1: "client_quit", 2: "server_shutdown", 3: "kicked", 4: "replaced", 5: "server_full",
    6: "protocol_error", 7: "idle_timeout", 8: "slow_consumer", 9: "rate_limited",
    10: "auth_failed", 11: "version_mismatch", 12: "handshake_timeout", 13: "resume_rejected",
    14: "join_refused", 15: "game_ended",
}
BYE_CLIENT_QUIT = 1

TAG_RELAY, TAG_STATE, TAG_PRESENCE = 1, 2, 3


# --- errors ---------------------------------------------------------------------------------------

class ClientError(Exception):
    """A check failed or the session could not go on."""


class ProtocolError(ClientError):
    """The server sent bytes that violate PROTOCOL.md (a fatal, unrecoverable framing/decoding
    problem)."""


class Truncated(ClientError):
    """The stream ended inside a frame."""


class Timeout(ClientError):
    """Nothing we were waiting for arrived in time."""


class PeerReset(ClientError):
    """The connection was reset (ECONNRESET) or a write failed (EPIPE)."""


# --- primitive decoding (PROTOCOL.md, "Primitive encodings") --------------------------------------

class Reader:
    """Strict reader over one frame body; every short read or bad value is `Malformed`."""

    def __init__(self, body: bytes, what: str):
        self.b = body
        self.pos = 0
        self.what = what

    def _take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.b):
            raise ProtocolError(f"malformed {self.what}: {field} runs past the end of the body")
        v = self.b[self.pos:self.pos + n]
        self.pos += n
        return v

    def u8(self, field: str) -> int:
        return self._take(1, field)[0]

    def u16(self, field: str) -> int:
        return struct.unpack(">H", self._take(2, field))[0]

    def u32(self, field: str) -> int:
        return struct.unpack(">I", self._take(4, field))[0]

    def u64(self, field: str) -> int:
        return struct.unpack(">Q", self._take(8, field))[0]

    def boolean(self, field: str) -> bool:
        v = self.u8(field)
        if v not in (0, 1):
            raise ProtocolError(f"malformed {self.what}: {field} is {v}, neither 0 nor 1")
        return v == 1

    def string(self, field: str, min_len: int, max_len: int) -> str:
        n = self.u16(field + " length")
        if n < min_len or n > max_len:
            raise ProtocolError(
                f"malformed {self.what}: {field} is {n} bytes, allowed {min_len} to {max_len}")
        raw = self._take(n, field)
        return utf8(raw, f"{self.what} {field}", ProtocolError)

    def rest(self) -> bytes:
        v = self.b[self.pos:]
        self.pos = len(self.b)
        return v

    def end(self) -> None:
        if self.pos != len(self.b):
            raise ProtocolError(
                f"malformed {self.what}: {len(self.b) - self.pos} trailing byte(s)")


def utf8(raw: bytes, what: str, exc=ProtocolError) -> str:
    # Python's strict UTF-8 codec rejects overlong forms, surrogates and code points > U+10FFFF,
    # as RFC 3629 requires.
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise exc(f"malformed {what}: not valid UTF-8 ({e.reason})") from None


# --- encoding client -> server messages -----------------------------------------------------------

def frame(body: bytes) -> bytes:
    if not 1 <= len(body) <= DEFAULT_MAX_FRAME_BYTES:
        raise ClientError(f"refusing to send a body of {len(body)} bytes")
    return struct.pack(">I", len(body)) + body


def enc_string(s: str, min_len: int, max_len: int, field: str) -> bytes:
    raw = s.encode("utf-8")
    if not min_len <= len(raw) <= max_len:
        raise ClientError(f"{field} must be {min_len} to {max_len} bytes of UTF-8, got {len(raw)}")
    return struct.pack(">H", len(raw)) + raw


def check_name(s: str, field: str) -> None:
    """Names the server refuses as protocol errors (PROTOCOL.md, Hello): control characters, and
    rooms in the automatic namespace."""
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in s):
        raise ClientError(f"{field} must not contain control characters")
    if field.endswith("room") and s.startswith(AUTO_ROOM_PREFIX):
        raise ClientError(f"{field} {s!r}: names starting with {AUTO_ROOM_PREFIX!r} are reserved")


def check_options(options: bytes) -> bytes:
    if len(options) > MAX_OPTIONS_BYTES:
        raise ClientError(f"join options are at most {MAX_OPTIONS_BYTES} bytes, "
                          f"these are {len(options)}")
    return options


def enc_hello(player_id: str, room: str, token: str | None, version: int = PROTOCOL_VERSION,
              options: bytes = b"") -> bytes:
    check_name(player_id, "player id")
    check_name(room, "room")
    body = bytes([K_HELLO]) + struct.pack(">H", version)
    body += enc_string(player_id, 1, MAX_PLAYER_ID_BYTES, "player id")
    body += enc_string(room, 0, MAX_ROOM_BYTES, "room")
    if token is None:
        body += b"\x00"
    else:
        body += b"\x01" + enc_string(token, 0, MAX_AUTH_TOKEN_BYTES, "auth token")
    body += b"\x00"  # has_resume: this client always starts a fresh session
    body += check_options(options)  # rest: the join options
    assert len(body) <= MAX_HELLO_BODY
    return frame(body)


def enc_u64_msg(kind: int, v: int) -> bytes:
    return frame(bytes([kind]) + struct.pack(">Q", v))


def enc_input(seq: int, payload: bytes) -> bytes:
    return frame(bytes([K_INPUT]) + struct.pack(">Q", seq) + payload)


def enc_join(room: str, options: bytes = b"") -> bytes:
    check_name(room, "join room")
    return frame(bytes([K_JOIN]) + enc_string(room, 1, MAX_ROOM_BYTES, "join room")
                 + check_options(options))


def enc_bye(code: int, text: str = "") -> bytes:
    return frame(bytes([K_BYE, code]) + text.encode("utf-8"))


# --- decoding server -> client messages -----------------------------------------------------------

def decode_server_body(body: bytes) -> tuple[int, dict]:
    kind = body[0]
    name = KIND_NAMES.get(kind)
    if name is None:
        raise ProtocolError(f"UnknownKind: 0x{kind:02x}")
    if kind in CLIENT_TO_SERVER_ONLY:
        raise ProtocolError(f"WrongDirection: the server sent a {name}")
    r = Reader(body, name)
    r.u8("kind")
    m: dict = {}
    if kind == K_WELCOME:
        m["session_id"] = r.u64("session_id")
        m["heartbeat_interval_ms"] = r.u32("heartbeat_interval_ms")
        m["idle_timeout_ms"] = r.u32("idle_timeout_ms")
        m["resume_token"] = r._take(RESUME_TOKEN_LEN, "resume_token")
        m["resumed"] = r.boolean("resumed")
        m["last_input_seq"] = r.u64("last_input_seq")
        m["room"] = r.string("room", 0, MAX_ROOM_BYTES)
        r.end()
    elif kind in (K_PING, K_PONG):
        m["nonce"] = r.u64("nonce")
        r.end()
    elif kind == K_EVENT:
        m["seq"] = r.u64("seq")
        m["payload"] = r.rest()
    elif kind == K_ACK:
        m["seq"] = r.u64("seq")
        r.end()
    elif kind == K_BYE:
        code = r.u8("code")
        if code not in BYE_NAMES:
            raise ProtocolError(f"malformed Bye: unknown code {code}")
        m["code"] = code
        m["text"] = utf8(r.rest(), "Bye text")
    elif kind == K_JOINED:
        m["room"] = r.string("room", 0, MAX_ROOM_BYTES)
        r.end()
    elif kind == K_JOIN_REFUSED:
        m["room"] = r.string("room", 0, MAX_ROOM_BYTES)
        m["text"] = utf8(r.rest(), "JoinRefused text")
    return kind, m


class BadPayload(Exception):
    """An invalid demo payload: the demo client's problem, not a protocol error."""


def decode_demo_payload(p: bytes) -> dict:
    """PROTOCOL.md, "Demo game payloads"."""
    if not p:
        raise BadPayload("empty payload (no tag)")

    def take(pos: int, n: int, field: str) -> bytes:
        if pos + n > len(p):
            raise BadPayload(f"{field} runs past the end of the payload")
        return p[pos:pos + n]

    def name_at(pos: int, field: str) -> tuple[str, int]:
        (n,) = struct.unpack(">H", take(pos, 2, field + " length"))
        if n > MAX_PLAYER_ID_BYTES:
            raise BadPayload(f"{field} is {n} bytes, over 64")
        s = utf8(take(pos + 2, n, field), field, BadPayload)
        return s, pos + 2 + n

    tag = p[0]
    if tag == TAG_RELAY:
        frm, pos = name_at(1, "relay from")
        (input_seq,) = struct.unpack(">Q", take(pos, 8, "relay input_seq"))
        return {"tag": "relay", "from": frm, "input_seq": input_seq, "data": p[pos + 8:]}
    if tag == TAG_STATE:
        if len(p) != 17:
            raise BadPayload(f"State payload is {len(p)} bytes, not 17")
        tick, members, inputs = struct.unpack(">QII", p[1:])
        return {"tag": "state", "tick": tick, "members": members, "inputs": inputs}
    if tag == TAG_PRESENCE:
        joined = take(1, 1, "presence joined")[0]
        if joined not in (0, 1):
            raise BadPayload(f"presence joined flag is {joined}")
        player, pos = name_at(2, "presence player")
        if pos != len(p):
            raise BadPayload(f"{len(p) - pos} trailing byte(s) after Presence")
        return {"tag": "presence", "joined": joined == 1, "player": player}
    raise BadPayload(f"unknown demo tag {tag}")


# --- the connection: a frame buffer over a socket -------------------------------------------------

class Conn:
    def __init__(self, sock: socket.socket, max_frame: int, verbose: bool):
        self.sock = sock
        self.buf = bytearray()
        self.max_frame = max_frame
        self.verbose = verbose
        self.eof = False
        self.reads = 0
        self.max_frames_in_one_read = 0
        self._frames_this_read = 0

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"[client] {msg}", file=sys.stderr)

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise PeerReset(f"write failed: {e}") from None
        except socket.timeout:
            raise Timeout("a write stayed blocked (the server is not reading)") from None
        self.log(f"sent {KIND_NAMES.get(data[4], '?')} ({len(data)} bytes)")

    def _take_frame(self) -> bytes | None:
        """One whole frame body out of the buffer, or None if more bytes are needed. The prefix is
        checked as soon as its 4 bytes are there, before any of the body."""
        if len(self.buf) < HEADER_LEN:
            return None
        (length,) = struct.unpack(">I", self.buf[:HEADER_LEN])
        if length == 0:
            raise ProtocolError("EmptyFrame: length prefix 0")
        if length > self.max_frame:
            raise ProtocolError(f"FrameTooLarge: length prefix {length} > {self.max_frame}")
        if len(self.buf) < HEADER_LEN + length:
            return None
        body = bytes(self.buf[HEADER_LEN:HEADER_LEN + length])
        del self.buf[:HEADER_LEN + length]
        return body

    def recv_frame(self, deadline: float) -> bytes | None:
        """The next frame body; None at a clean end of stream. Raises Timeout at the deadline,
        Truncated if the stream ends inside a frame, PeerReset on ECONNRESET."""
        while True:
            body = self._take_frame()
            if body is not None:
                self._frames_this_read += 1
                self.max_frames_in_one_read = max(self.max_frames_in_one_read,
                                                  self._frames_this_read)
                return body
            if self.eof:
                if self.buf:
                    raise Truncated(f"stream ended inside a frame ({len(self.buf)} bytes buffered)")
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout("deadline passed")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise Timeout("deadline passed") from None
            except ConnectionResetError as e:
                raise PeerReset(f"read failed: {e}") from None
            self.reads += 1
            self._frames_this_read = 0
            if not chunk:
                self.eof = True
            else:
                self.buf += chunk


# --- the session ----------------------------------------------------------------------------------

class Session:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.conn: Conn | None = None
        self.obs: dict = {
            "server": args.address, "player_id": args.player, "hello_room": args.room,
            "welcome": None, "pong_nonce_ok": False, "joined_room": None,
            "join_refused_room": None, "join_refused_text": None,
            "inputs_sent": 0, "first_input_seq": None, "relays_received": 0,
            "relays_from_others": 0, "state_events": 0, "presence_events": 0,
            "invalid_payloads": 0, "events_received": 0, "first_event_seq": None,
            "last_event_seq": 0, "events_contiguous": True, "acked_event_seq": 0,
            "server_pings_answered": 0, "server_pings_after_bye": 0, "server_acks": 0,
            "final_ack_seq": None, "events_after_our_bye": 0, "bye_code": None,
            "bye_name": None, "bye_text": None, "clean_eof": False,
            "max_frames_in_one_read": 0,
        }
        self.failures: list[str] = []
        self.welcome: dict | None = None
        self.sent_bye = False
        self.got_bye = False
        self.expected_relays: list[tuple[int, bytes]] = []  # (seq, data), in send order
        self.relay_index = 0
        self.pending_pong: int | None = None
        self.got_pong_nonces: list[int] = []
        self.joined: list[str] = []
        self.join_refused: list[tuple[str, str]] = []
        self.last_ping_sent = time.monotonic()

    def fail(self, msg: str) -> None:
        self.failures.append(msg)

    # -- frame dispatch

    def handle(self, body: bytes) -> None:
        kind, m = decode_server_body(body)
        c = self.conn
        if self.got_bye:
            # "After sending a Bye a peer sends nothing more."
            raise ProtocolError(f"the server sent a {KIND_NAMES[kind]} after its Bye")
        if self.welcome is None and kind not in (K_WELCOME, K_BYE):
            raise ProtocolError(f"first frame from the server is a {KIND_NAMES[kind]}, "
                                f"not a Welcome or Bye")
        if kind == K_WELCOME:
            if self.welcome is not None:
                raise ProtocolError("a second Welcome")
            self.welcome = m
            c.log(f"Welcome session_id={m['session_id']} room={m['room']!r}")
        elif kind == K_PING:
            if self.sent_bye:
                self.obs["server_pings_after_bye"] += 1  # we send nothing after our Bye
            else:
                c.send(enc_u64_msg(K_PONG, m["nonce"]))
                self.obs["server_pings_answered"] += 1
                # Ack with the Pong, as PROTOCOL.md suggests, if the value changed.
                self.send_ack_if_new()
        elif kind == K_PONG:
            self.got_pong_nonces.append(m["nonce"])
        elif kind == K_EVENT:
            self.on_event(m["seq"], m["payload"])
        elif kind == K_ACK:
            prev = self.obs["final_ack_seq"]
            if prev is not None and m["seq"] < prev:
                self.fail(f"server Ack went backwards: {prev} then {m['seq']}")
            top = self.next_input_seq() - 1
            if m["seq"] > top:
                self.fail(f"server acknowledged input {m['seq']}, but the highest sent is {top}")
            self.obs["final_ack_seq"] = m["seq"]
            self.obs["server_acks"] += 1
        elif kind == K_BYE:
            self.got_bye = True
            self.obs["bye_code"] = m["code"]
            self.obs["bye_name"] = BYE_NAMES[m["code"]]
            self.obs["bye_text"] = m["text"]
            c.log(f"Bye {BYE_NAMES[m['code']]} {m['text']!r}")
        elif kind == K_JOINED:
            self.joined.append(m["room"])
        elif kind == K_JOIN_REFUSED:
            self.join_refused.append((m["room"], m["text"]))

    def on_event(self, seq: int, payload: bytes) -> None:
        o = self.obs
        o["events_received"] += 1
        if o["first_event_seq"] is None:
            o["first_event_seq"] = seq
            if seq != 1:
                o["events_contiguous"] = False
                self.fail(f"first event of a fresh session has seq {seq}, expected 1")
        elif seq != o["last_event_seq"] + 1:
            o["events_contiguous"] = False
            self.fail(f"event seq gap/repeat: {o['last_event_seq']} then {seq}")
        o["last_event_seq"] = seq
        if self.sent_bye:
            o["events_after_our_bye"] += 1
        try:
            p = decode_demo_payload(payload)
        except BadPayload as e:
            # Not a protocol error: count it and skip the event.
            o["invalid_payloads"] += 1
            self.conn.log(f"invalid demo payload in event {seq}: {e}")
            return
        if p["tag"] == "state":
            o["state_events"] += 1
        elif p["tag"] == "presence":
            o["presence_events"] += 1
        elif p["from"] != self.a.player:
            o["relays_from_others"] += 1
        else:
            i = self.relay_index
            if i >= len(self.expected_relays):
                self.fail(f"event {seq}: relay of our input {p['input_seq']} that we never sent")
                return
            want_seq, want_data = self.expected_relays[i]
            if p["input_seq"] != want_seq or p["data"] != want_data:
                self.fail(f"event {seq}: relay of input {p['input_seq']} "
                          f"(data {p['data'].hex()}), expected input {want_seq} "
                          f"(data {want_data.hex()})")
            self.relay_index += 1
            o["relays_received"] = self.relay_index

    # -- helpers

    def next_input_seq(self) -> int:
        base = self.welcome["last_input_seq"] if self.welcome else 0
        return base + self.obs["inputs_sent"] + 1

    def send_ack_if_new(self) -> None:
        last = self.obs["last_event_seq"]
        if not self.sent_bye and last > self.obs["acked_event_seq"]:
            self.conn.send(enc_u64_msg(K_ACK, last))
            self.obs["acked_event_seq"] = last

    def keepalive(self) -> None:
        """With heartbeat_interval_ms = 0 the client must send a frame every idle_timeout_ms/3."""
        w = self.welcome
        if w and w["heartbeat_interval_ms"] == 0 and not self.sent_bye:
            period = w["idle_timeout_ms"] / 3000.0
            if time.monotonic() - self.last_ping_sent >= period:
                self.conn.send(enc_u64_msg(K_PING, int.from_bytes(os.urandom(8), "big")))
                self.last_ping_sent = time.monotonic()

    def wait_for(self, what: str, done, timeout: float | None = None,
                 allow_timeout: bool = False) -> None:
        """Pump frames until done() is true. Fails on timeout (unless allow_timeout) or EOF."""
        deadline = time.monotonic() + (self.a.timeout if timeout is None else timeout)
        while not done():
            self.keepalive()
            step = deadline
            if self.welcome and self.welcome["heartbeat_interval_ms"] == 0:
                step = min(deadline, time.monotonic() + self.welcome["idle_timeout_ms"] / 3000.0)
            try:
                body = self.conn.recv_frame(step)
            except Timeout:
                if time.monotonic() < deadline:
                    continue
                if allow_timeout:
                    return
                raise Timeout(f"timed out after {self.a.timeout:g} s waiting for {what}") from None
            if body is None:
                raise ClientError(f"the server closed the connection while we waited for {what}"
                                  + (f" (Bye {self.obs['bye_name']}: {self.obs['bye_text']!r})"
                                     if self.got_bye else " (no Bye)"))
            self.handle(body)
            if self.got_bye and not self.sent_bye:
                raise ClientError(f"the server said Bye {self.obs['bye_name']} "
                                  f"({self.obs['bye_text']!r}) while we waited for {what}")

    # -- the scripted session

    def run(self) -> None:
        a = self.a
        host, port = parse_address(a.address)
        # Encode what we will send first, so bad arguments never open a connection.
        self.hello = enc_hello(a.player, a.room, a.token, options=a.options.encode())
        enc_join(a.join, a.join_options.encode())
        try:
            sock = socket.create_connection((host, port), timeout=a.timeout)
        except OSError as e:
            raise ClientError(f"cannot connect to {a.address}: {e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(a.timeout)
        self.conn = Conn(sock, a.max_frame, a.verbose)
        try:
            self.session()
        finally:
            self.obs["max_frames_in_one_read"] = self.conn.max_frames_in_one_read
            sock.close()

    def session(self) -> None:
        a, c, o = self.a, self.conn, self.obs

        # 1. Hello -> Welcome
        c.send(self.hello)
        self.wait_for("Welcome", lambda: self.welcome is not None)
        w = self.welcome
        o["welcome"] = {
            "session_id": w["session_id"],
            "heartbeat_interval_ms": w["heartbeat_interval_ms"],
            "idle_timeout_ms": w["idle_timeout_ms"],
            # The token is a credential: report only whether resume is on.
            "resume_token_all_zero": w["resume_token"] == bytes(RESUME_TOKEN_LEN),
            "resumed": w["resumed"],
            "last_input_seq": w["last_input_seq"],
            "room": w["room"],
        }
        if w["resumed"]:
            self.fail("Welcome.resumed is true for a Hello without resume fields")
        if a.room and w["room"] != a.room:
            self.fail(f"Welcome.room is {w['room']!r}, we asked for {a.room!r}")
        if not a.room and not w["room"].startswith("auto-"):
            self.fail(f"Welcome.room is {w['room']!r}, expected an auto-N room")
        if w["heartbeat_interval_ms"] and w["idle_timeout_ms"] <= w["heartbeat_interval_ms"]:
            self.fail("Welcome.idle_timeout_ms is not greater than heartbeat_interval_ms")
        self.last_ping_sent = time.monotonic()

        # 2. our Ping -> the matching Pong
        nonce = int.from_bytes(os.urandom(8), "big")
        c.send(enc_u64_msg(K_PING, nonce))
        self.last_ping_sent = time.monotonic()
        self.wait_for("Pong", lambda: bool(self.got_pong_nonces))
        o["pong_nonce_ok"] = self.got_pong_nonces[0] == nonce
        if not o["pong_nonce_ok"]:
            self.fail(f"Pong nonce {self.got_pong_nonces[0]:#x}, expected {nonce:#x}")

        # 3. Join -> Joined
        c.send(enc_join(a.join, a.join_options.encode()))
        self.wait_for("Joined", lambda: bool(self.joined))
        o["joined_room"] = self.joined[0]
        if self.joined[0] != a.join:
            self.fail(f"Joined room {self.joined[0]!r}, we asked for {a.join!r}")
        # 3b. Join a room that refuses -> JoinRefused; we stay where we are.
        if a.refused_join:
            c.send(enc_join(a.refused_join))
            self.wait_for("JoinRefused", lambda: bool(self.join_refused))
            room, text = self.join_refused[0]
            o["join_refused_room"], o["join_refused_text"] = room, text
            if room != a.refused_join:
                self.fail(f"JoinRefused names {room!r}, we asked for {a.refused_join!r}")
            if len(self.joined) != 1:
                self.fail(f"a refused Join moved us anyway: {self.joined}")

        # 4. N inputs, paced under the rate limit, reading between them
        o["first_input_seq"] = self.next_input_seq()
        for i in range(a.inputs):
            seq = self.next_input_seq()
            data = input_payload(a.player, seq, i)
            self.expected_relays.append((seq, data))
            c.send(enc_input(seq, data))
            o["inputs_sent"] += 1
            if a.input_interval > 0:
                self.wait_for("nothing", lambda: False, timeout=a.input_interval,
                              allow_timeout=True)
        self.wait_for(f"the relays of our {a.inputs} inputs",
                      lambda: self.relay_index >= len(self.expected_relays))

        # 5. optionally stay to see the server's heartbeat Pings
        if a.server_pings > 0:
            hb = w["heartbeat_interval_ms"]
            if hb == 0:
                self.fail("asked to wait for server Pings, but heartbeat_interval_ms is 0")
            else:
                self.wait_for(f"{a.server_pings} server Ping(s)",
                              lambda: o["server_pings_answered"] >= a.server_pings,
                              timeout=a.server_pings * hb / 1000.0 + a.timeout)

        # 6. Ack the events, then quit: Bye{client_quit} -> (events), Ack, Bye, end of stream
        self.send_ack_if_new()
        c.send(enc_bye(BYE_CLIENT_QUIT, a.bye_text))
        self.sent_bye = True
        deadline = time.monotonic() + a.timeout
        while True:
            try:
                body = c.recv_frame(deadline)
            except Timeout:
                raise Timeout(f"timed out after {a.timeout:g} s waiting for the server's Bye "
                              f"and end of stream") from None
            except PeerReset as e:
                o["clean_eof"] = False
                self.fail(f"connection reset after our Bye: {e}")
                break
            if body is None:
                o["clean_eof"] = True
                break
            self.handle(body)
        if not self.got_bye:
            self.fail("end of stream without the server's Bye")
        elif o["bye_code"] != BYE_CLIENT_QUIT:
            self.fail(f"server Bye is {o['bye_name']} ({o['bye_text']!r}), expected client_quit")
        want_ack = self.next_input_seq() - 1
        if o["final_ack_seq"] != want_ack and not (want_ack == 0 and o["final_ack_seq"] is None):
            self.fail(f"last server Ack is {o['final_ack_seq']}, expected {want_ack}")
        if o["relays_received"] != o["inputs_sent"]:
            self.fail(f"{o['relays_received']} relays for {o['inputs_sent']} inputs")
        if o["invalid_payloads"]:
            self.fail(f"{o['invalid_payloads']} event(s) with an invalid demo payload")


def input_payload(player: str, seq: int, i: int) -> bytes:
    """Distinct payloads; every fifth one empty, and some non-UTF-8 bytes, to exercise `rest`."""
    if i % 5 == 4:
        return b""
    return f"{player}#{seq}".encode() + bytes([0x00, 0xFF, i & 0xFF])


def parse_address(s: str) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise ClientError(f"address must be HOST:PORT, got {s!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Play one full session against the game server "
                                 "(protocol version 3, demo game 'rooms').")
    ap.add_argument("address", help="server address, HOST:PORT")
    ap.add_argument("--player", required=True, help="player id (1 to 64 bytes of UTF-8)")
    ap.add_argument("--room", required=True,
                    help="room named in Hello (0 to 64 bytes; empty lets the server choose)")
    ap.add_argument("--join", default=None,
                    help="second room to Join (1 to 64 bytes); default: ROOM-2")
    ap.add_argument("--options", default="",
                    help="join options sent with Hello, as UTF-8 text (at most 1024 bytes)")
    ap.add_argument("--join-options", default="",
                    help="join options sent with the Join, as UTF-8 text (at most 1024 bytes)")
    ap.add_argument("--refused-join", default=None,
                    help="after the Join, ask to Join this room, which must refuse (JoinRefused)")
    ap.add_argument("-n", "--inputs", type=int, default=10, help="inputs to send (default 10)")
    ap.add_argument("--input-interval", type=float, default=0.02,
                    help="seconds between inputs, to stay under the rate limit (default 0.02)")
    ap.add_argument("--server-pings", type=int, default=0,
                    help="before quitting, stay until this many server Pings were answered")
    ap.add_argument("--token", default=None, help="auth token, if the server requires one")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds to wait for each expected message (default 10)")
    ap.add_argument("--max-frame", type=int, default=DEFAULT_MAX_FRAME_BYTES,
                    help="largest frame body accepted from the server (default 65536)")
    ap.add_argument("--bye-text", default="", help="text of our Bye{client_quit}")
    ap.add_argument("-v", "--verbose", action="store_true", help="log frames on stderr")
    a = ap.parse_args(argv)
    if a.join is None:
        a.join = (a.room or "room") + "-2"
    if a.inputs < 0:
        ap.error("--inputs must be >= 0")

    s = Session(a)
    try:
        s.run()
    except ClientError as e:
        s.fail(f"{type(e).__name__}: {e}")
    except OSError as e:
        s.fail(f"socket error: {e}")
    s.obs["ok"] = not s.failures
    s.obs["failures"] = s.failures
    print(json.dumps(s.obs, indent=2))
    if s.failures:
        for f in s.failures:
            print(f"rooms_client: FAILED: {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
