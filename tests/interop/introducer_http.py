"""Client of swampgate's announcement API (docs/introducer-http.md), verifying with
Tahoe-LAFS 1.20's own code.

Usage:
  python introducer_http.py subscribe HOST:PORT SWISSNUM SERVICE
      WebSocket subscriber: prints one JSON line per message received:
      {"key": "v0-...", "nickname": ..., "seqnum": ..., "verified": true|false,
       "envelope": {...}}. Signatures are checked with
      allmydata.introducer.common.unsign_from_foolscap on the received bytes.
  python introducer_http.py publish HOST:PORT SWISSNUM ENVELOPE_JSON
      POSTs the envelope; prints {"status": N, "body": ...}.
  python introducer_http.py list HOST:PORT SWISSNUM SERVICE
      GETs the current announcements; verifies each; prints {"status": N, "keys": [...]}.
  python introducer_http.py sign NICKNAME
      Prints a fresh storage announcement signed by a new key with Tahoe's
      sign_to_foolscap, as an envelope, and its key: {"key": ..., "envelope": ...}.

TLS: the test peers run on loopback with swampgate's self-signed certificate; the
script does not check it (the Rust tests pin it elsewhere).
"""

import base64
import http.client
import json
import os
import socket
import ssl
import struct
import sys

from allmydata.crypto import ed25519
from allmydata.introducer.common import sign_to_foolscap, unsign_from_foolscap


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def auth(swissnum):
    return "Tahoe-LAFS " + base64.b64encode(swissnum.encode("ascii")).decode("ascii")


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_frame(sock):
    b0, b1 = read_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", read_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack(">Q", read_exact(sock, 8))
    return b0 & 0x0F, read_exact(sock, n)


def subscribe(hostport, swissnum, service):
    host, port = hostport.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)))
    sock = tls_context().wrap_socket(raw, server_hostname=host)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    sock.sendall(
        (
            f"GET /introducer/v1/subscribe/{service} HTTP/1.1\r\n"
            f"Host: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: {auth(swissnum)}\r\n\r\n"
        ).encode("ascii")
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += read_exact(sock, 1)
    status = head.split(b"\r\n", 1)[0]
    print(json.dumps({"handshake": status.decode("ascii")}), flush=True)
    if b" 101 " not in status:
        sys.exit(1)
    while True:
        op, payload = read_frame(sock)
        if op == 0x8:
            print(json.dumps({"closed": True}), flush=True)
            return
        if op != 0x1:
            continue
        env = json.loads(payload)
        msg = base64.b64decode(env["msg"])
        ann_t = (msg, env["sig"].encode("ascii"), env["pubkey"].encode("ascii"))
        try:
            ann, key_s = unsign_from_foolscap(ann_t)
            verified = True
        except Exception as e:
            ann, key_s, verified = json.loads(msg), env["pubkey"].encode(), False
            print(json.dumps({"verify_error": repr(e)}), flush=True)
        print(
            json.dumps(
                {
                    "key": key_s.decode("ascii"),
                    "nickname": ann.get("nickname"),
                    "seqnum": ann.get("seqnum"),
                    "verified": verified,
                    "envelope": env,
                }
            ),
            flush=True,
        )


def publish(hostport, swissnum, envelope):
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=tls_context(), timeout=30)
    conn.request(
        "POST",
        "/introducer/v1/announcements",
        body=envelope.encode("utf-8"),
        headers={"Authorization": auth(swissnum), "Content-Type": "application/json"},
    )
    r = conn.getresponse()
    print(json.dumps({"status": r.status, "body": r.read().decode("utf-8", "replace")}))


def list_announcements(hostport, swissnum, service):
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=tls_context(), timeout=30)
    conn.request(
        "GET", f"/introducer/v1/announcements/{service}", headers={"Authorization": auth(swissnum)}
    )
    r = conn.getresponse()
    body = json.loads(r.read())
    keys = []
    for env in body.get("announcements", []):
        msg = base64.b64decode(env["msg"])
        _, key_s = unsign_from_foolscap((msg, env["sig"].encode(), env["pubkey"].encode()))
        keys.append(key_s.decode("ascii"))
    print(json.dumps({"status": r.status, "keys": keys}))


def sign(nickname):
    signing_key, _ = ed25519.create_signing_keypair()
    ann = {
        "version": 0,
        "nickname": nickname,
        "app-versions": [],
        "my-version": "tahoe-lafs/1.20.0",
        "oldest-supported": "1.0.0",
        "service-name": "storage",
        "anonymous-storage-FURL": "pb://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@tcp:127.0.0.1:1/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "permutation-seed-base32": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "seqnum": 1,
        "nonce": "n",
    }
    msg, sig, key = sign_to_foolscap(ann, signing_key)
    env = {
        "msg": base64.b64encode(msg).decode("ascii"),
        "sig": sig.decode("ascii"),
        "pubkey": key.decode("ascii"),
    }
    print(json.dumps({"key": key.decode("ascii"), "envelope": env}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "subscribe":
        subscribe(*sys.argv[2:5])
    elif cmd == "publish":
        publish(*sys.argv[2:5])
    elif cmd == "list":
        list_announcements(*sys.argv[2:5])
    elif cmd == "sign":
        sign(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd!r}")
