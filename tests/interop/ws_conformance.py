"""RFC 6455 conformance of swampgate's announcement subscription endpoint, checked
with an independent WebSocket implementation (Autobahn|Python, asyncio flavour).

Usage:
  python ws_conformance.py HOST:PORT SWISSNUM LIMIT

LIMIT is the server's configured `max_websocket_message_bytes`. Each case opens its
own `wss://HOST:PORT/introducer/v1/subscribe/storage` connection and prints one JSON
line: {"case": NAME, "ok": true|false, "detail": {...}}; the last line is
{"done": true, "passed": N, "failed": M}. Cases:

- handshake: the opening handshake completes (101, Sec-WebSocket-Accept checked by
  Autobahn), and a subscriber receives announcements published meanwhile as text
  messages in frames Autobahn accepts (unmasked, valid UTF-8 JSON);
- close-handshake: a close frame (1000) from the client is answered with a close
  frame (1000) and the server closes the TCP connection: a clean close;
- ping-pong: a ping with a payload is answered by a pong with the same payload;
- fragmented: a binary message of LIMIT-16 bytes in 1000-byte fragments, then a
  text message in 3 fragments, then a ping: the connection is still open (pong
  received), then closed cleanly;
- unmasked: a masked-less client frame fails the connection with close 1002;
- oversized-frame: one frame of LIMIT+1 bytes gets close 1009;
- oversized-message: a message of 2*LIMIT bytes in fragments of LIMIT/2 (each
  frame under the limit) gets close 1009;
- control-too-long: a ping with 126 bytes of payload (over the 125 control frames may
  carry) gets close 1002.

Autobahn's client refuses to send an over-long ping itself; that case writes its
frame through Autobahn's raw frame sender. TLS: the self-signed certificate on
loopback is not checked (the Rust tests pin it elsewhere).
"""

import asyncio
import base64
import http.client
import json
import ssl
import sys

from allmydata.crypto import ed25519
from allmydata.introducer.common import sign_to_foolscap
from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

TIMEOUT = 20


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def auth(swissnum):
    return "Tahoe-LAFS " + base64.b64encode(swissnum.encode("ascii")).decode("ascii")


def signed_envelope(nickname):
    """A storage announcement signed with Tahoe's own code, as an HTTP envelope."""
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
    return {
        "msg": base64.b64encode(msg).decode("ascii"),
        "sig": sig.decode("ascii"),
        "pubkey": key.decode("ascii"),
    }


def publish(hostport, swissnum, envelope):
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=tls_context(), timeout=30)
    conn.request(
        "POST",
        "/introducer/v1/announcements",
        body=json.dumps(envelope).encode("utf-8"),
        headers={"Authorization": auth(swissnum), "Content-Type": "application/json"},
    )
    r = conn.getresponse()
    r.read()
    return r.status


class Case(WebSocketClientProtocol):
    """Runs `self.factory.script(self)` once open; records what happens."""

    def onConnect(self, response):
        self.factory.result["http_status"] = getattr(response, "code", None) or 101

    def onOpen(self):
        self.factory.result["opened"] = True
        self.factory.script(self)

    def onMessage(self, payload, isBinary):
        r = self.factory.result
        r.setdefault("messages", []).append(
            {"binary": isBinary, "text": None if isBinary else payload.decode("utf-8")}
        )
        if self.factory.on_message:
            self.factory.on_message(self, payload, isBinary)

    def onPong(self, payload):
        self.factory.result.setdefault("pongs", []).append(payload.decode("latin-1"))
        if self.factory.on_pong:
            self.factory.on_pong(self, payload)

    def onClose(self, wasClean, code, reason):
        r = self.factory.result
        r["was_clean"] = wasClean
        r["remote_close_code"] = self.remoteCloseCode
        r["close_reason"] = reason
        if not self.factory.done.done():
            self.factory.done.set_result(None)


async def run_case(host, port, swissnum, script, on_message=None, on_pong=None, **options):
    loop = asyncio.get_running_loop()
    url = "wss://%s:%d/introducer/v1/subscribe/storage" % (host, port)
    headers = {"Authorization": auth(swissnum)}
    factory = WebSocketClientFactory(url, headers=headers)
    factory.protocol = Case
    factory.setProtocolOptions(
        openHandshakeTimeout=TIMEOUT,
        closeHandshakeTimeout=TIMEOUT,
        serverConnectionDropTimeout=TIMEOUT,
        **options,
    )
    factory.result = {"opened": False}
    factory.script = script
    factory.on_message = on_message
    factory.on_pong = on_pong
    factory.done = loop.create_future()
    transport, _ = await loop.create_connection(
        factory, host, port, ssl=tls_context(), server_hostname=host
    )
    try:
        await asyncio.wait_for(factory.done, TIMEOUT * 2)
    except asyncio.TimeoutError:
        factory.result["timeout"] = True
        transport.abort()
    return factory.result


async def main():
    hostport, swissnum, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    host, port = hostport.rsplit(":", 1)
    port = int(port)
    results = []

    def report(name, ok, detail):
        results.append(ok)
        print(json.dumps({"case": name, "ok": bool(ok), "detail": detail}), flush=True)

    # handshake, and a publication delivered as a text message.
    signed = {}

    def start_publishing(proto):
        async def go():
            env = await asyncio.to_thread(signed_envelope, "ws-conformance")
            signed["envelope"] = env
            signed["status"] = await asyncio.to_thread(publish, hostport, swissnum, env)

        signed["task"] = asyncio.ensure_future(go())

    def got(proto, payload, isBinary):
        env = json.loads(payload.decode("utf-8"))
        if signed.get("envelope") and env == signed["envelope"]:
            proto.sendClose(1000)

    r = await run_case(host, port, swissnum, start_publishing, on_message=got)
    # The message may arrive before the POST's answer: wait for that too.
    if "task" in signed:
        await asyncio.wait_for(signed.pop("task"), TIMEOUT)
    received = [
        json.loads(m["text"]) for m in r.get("messages", []) if not m["binary"]
    ]
    report(
        "handshake",
        r["opened"]
        and signed.get("status") == 200
        and signed.get("envelope") in received
        and r.get("remote_close_code") == 1000
        and r.get("was_clean"),
        {"result": r, "publish_status": signed.get("status")},
    )

    # close handshake
    r = await run_case(host, port, swissnum, lambda p: p.sendClose(1000, "bye"))
    report(
        "close-handshake",
        r["opened"] and r.get("remote_close_code") == 1000 and r.get("was_clean"),
        r,
    )

    # ping / pong
    r = await run_case(
        host,
        port,
        swissnum,
        lambda p: p.sendPing(b"swampgate-ping"),
        on_pong=lambda p, payload: p.sendClose(1000),
    )
    report(
        "ping-pong",
        r.get("pongs") == ["swampgate-ping"] and r.get("remote_close_code") == 1000,
        r,
    )

    # fragmented messages within the limit
    def fragmented(p):
        p.sendMessage(b"f" * (limit - 16), isBinary=True, fragmentSize=1000)
        p.beginMessage(isBinary=False)
        for part in ("hel", "lo, ", "world"):
            p.sendMessageFrame(part.encode("utf-8"))
        p.endMessage()
        p.sendPing(b"after-fragments")

    r = await run_case(
        host,
        port,
        swissnum,
        fragmented,
        on_pong=lambda p, payload: p.sendClose(1000),
    )
    report(
        "fragmented",
        r.get("pongs") == ["after-fragments"]
        and r.get("remote_close_code") == 1000
        and r.get("was_clean"),
        r,
    )

    # unmasked client frames
    r = await run_case(
        host,
        port,
        swissnum,
        lambda p: p.sendMessage(b"unmasked", isBinary=True),
        maskClientFrames=False,
    )
    report("unmasked", r.get("remote_close_code") == 1002, r)

    # one frame over the limit
    r = await run_case(
        host,
        port,
        swissnum,
        lambda p: p.sendMessage(b"o" * (limit + 1), isBinary=True),
    )
    report("oversized-frame", r.get("remote_close_code") == 1009, r)

    # a message over the limit in frames under it
    r = await run_case(
        host,
        port,
        swissnum,
        lambda p: p.sendMessage(
            b"m" * (2 * limit), isBinary=True, fragmentSize=max(1, limit // 2)
        ),
    )
    report("oversized-message", r.get("remote_close_code") == 1009, r)

    # a control frame longer than 125 bytes (Autobahn will not send one itself)
    r = await run_case(
        host,
        port,
        swissnum,
        lambda p: p.sendFrame(opcode=9, payload=b"p" * 126),
    )
    report("control-too-long", r.get("remote_close_code") == 1002, r)

    passed = sum(1 for ok in results if ok)
    print(
        json.dumps({"done": True, "passed": passed, "failed": len(results) - passed}),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
