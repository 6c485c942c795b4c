#!/usr/bin/env python3
"""Write the fuzz targets' seed corpora into fuzz/corpus/TARGET/ from the repo's
captured bytes: the Foolscap session transcripts in fixtures/ (split at the phase
boundaries their sidecars record) and the CBOR vectors captured from Tahoe in
src/gbs/testdata/cbor_vectors.txt, the signed introducer announcements captured from
Tahoe in fixtures/introducer-announcements.json, plus a few hand-written header, URL
and announcement values.
Idempotent: seeds are named by content hash."""

import base64
import hashlib
import struct
import json
import pathlib
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"


def put(target, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest())).write_bytes(data)


def fixtures():
    for side in sorted((ROOT / "fixtures").glob("*.json")):
        name = side.stem
        # Only transcripts: a sidecar with both byte streams beside it.
        if not (ROOT / "fixtures" / f"{name}.c2s.bin").exists():
            continue
        meta = json.loads(side.read_text())
        for d in ("c2s", "s2c"):
            data = (ROOT / "fixtures" / f"{name}.{d}.bin").read_bytes()
            yield meta, d, data


def main():
    n = 0
    for meta, d, data in fixtures():
        off = meta[d]
        pe, he, de, bs = off["plaintext_end"], off["hello_end"], off["decision_end"], off["banana_start"]
        # negotiate: the upgrade request/response, HELLO and DECISION blocks.
        put("negotiate", data[:pe])
        put("negotiate", data[pe:he])
        if de:
            put("negotiate", data[he:de])
        # sniff: how the connection starts, in pieces of 1, 3 and 255 bytes.
        for ctl in (1, 3, 255):
            put("sniff", bytes([ctl]) + data[:300])
        # banana: the whole stream and 2 KiB windows, vocab table 1, various chunkings.
        banana = data[bs:]
        put("banana", b"\xff" + banana)
        for i in range(0, len(banana), 2048):
            put("banana", bytes([1 + 2 * (i // 2048 % 64)]) + banana[i:i + 2048])
        n += 1
    # Hand-made TLS ClientHello start and plain HTTP for the sniffer.
    put("sniff", b"\x02\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32))
    put("sniff", b"\x08GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    selectors = {
        "allocate_request": 0, "corrupt_request": 1, "rtw_request": 2,
        "version": 3, "version_small": 3, "allocate_response": 4,
        "allocate_response_empty": 4, "share_set": 5, "share_set_empty": 5,
        "write_progress": 6, "write_complete": 6, "rtw_response": 7,
        "rtw_response_empty": 7,
    }
    for line in (ROOT / "src/gbs/testdata/cbor_vectors.txt").read_text().splitlines():
        if not line.strip():
            continue
        name, hexdata = line.split()
        put("gbs_bodies", bytes([selectors[name]]) + bytes.fromhex(hexdata))
    for sel, js in [
        (0, b'{"share-numbers": [1, 2, 3], "allocated-size": 48}'),
        (1, b'{"reason": "bad hash"}'),
        (2, b'{"test-write-vectors": {"0": {"test": [{"offset": 0, "size": 1, "specimen": ""}],'
            b' "write": [{"offset": 0, "data": "MDEy"}], "new-length": null}},'
            b' "read-vector": [{"offset": 0, "size": 3}]}'),
        (3, b'{"http://allmydata.org/tahoe/protocols/storage/v1": {"maximum-immutable-share-size": 1,'
            b' "maximum-mutable-share-size": 2, "available-space": 3}, "application-version": "eA=="}'),
        (4, b'{"already-have": [1], "allocated": [2, 3]}'),
        (5, b'[0, 1, 2]'),
        (6, b'{"required": [{"begin": 16, "end": 48}]}'),
        (7, b'{"success": true, "data": {"0": ["MDEy", ""]}}'),
    ]:
        put("gbs_bodies", bytes([0x80 | sel]) + js)

    for h in [b"bytes=0-99", b"bytes=5-", b"bytes=-5", b"Bytes = 0-0", b"bytes=0-1,3-4",
              b"bytes=18446744073709551615-18446744073709551616"]:
        put("gbs_headers", b"\x00" + h)
    for h in [b"bytes 0-99/*", b"bytes 0-99/100", b"bytes */100", b"bytes 5-4/*"]:
        put("gbs_headers", b"\x00" + h)
    put("gbs_headers", b"\x01Tahoe-LAFS " + base64.b64encode(b"yci4erqgi6kgb3ybym4y3qlox2zawafr"))
    secret = base64.b64encode(bytes(range(32)))
    put("gbs_headers", b"\x02lease-renew-secret " + secret + b"\x00lease-cancel-secret " + secret
        + b"\x00upload-secret " + secret + b"\x00write-enabler " + secret)

    for u in [
        "pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:42102,tcp:[::1]:7,example.org:80,tor:abc.onion:80/yci4erqgi6kgb3ybym4y3qlox2zawafr",
        "pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@/introducer",
        "pb://1WUX-ARRndsyRZS6BlLd1eDZo2AMRYkUEDC_dCPPQmQ@127.0.0.1:7750/yci4erqgi6kgb3ybym4y3qlox2zawafr#v=1",
        "pb+tor://1WUX-ARRndsyRZS6BlLd1eDZo2AMRYkUEDC_dCPPQmQ@[::1]:7750/swiss#v=1",
        "local:shares",
        "tcp:example.org:80,tcp:127.0.0.1:9000",
    ]:
        put("urls", u.encode())
    announcements()
    print(f"seeded from {n} transcript directions into {CORPUS}", file=sys.stderr)


def announcements():
    """announcement: byte 0 is the path (% 3), the key ((b // 3) & 1: 0 is the
    adopted node's) and the endpoint ((b // 6) & 1: NURL or FURL)."""
    doc = json.loads((ROOT / "fixtures/introducer-announcements.json").read_text())
    for a in doc["announcements"]:
        msg, sig, key = (a[k].encode() for k in ("msg", "sig", "key"))
        # Foolscap: a tuple (shape 0) of three byte strings (kind 0), as publish_v2
        # and announce_v2 carry it; also as a list (shape 1), as Tahoe accepts.
        items = b"".join(b"\x00" + struct.pack("<H", len(p)) + p for p in (msg, sig, key))
        put("announcement", b"\x00" + bytes([3 << 2 | 0]) + items)
        put("announcement", b"\x00" + bytes([3 << 2 | 1]) + items)
        # HTTP: the POST body, the envelope of docs/introducer-http.md.
        envelope = {"msg": base64.b64encode(msg).decode(), "sig": a["sig"], "pubkey": a["key"]}
        put("announcement", b"\x01" + json.dumps(envelope).encode())
        # Contents, signed in the target: each key/endpoint combination.
        for ctl in (2, 5, 8, 11):
            put("announcement", bytes([ctl]) + msg)
    for msg in [
        b'{"service-name": "storage", "seqnum": 1}',
        b'{"service-name": "storage", "nickname": "caf\\u00e9 \\ud834\\udd1e",'
        b' "seqnum": -0, "n": [1.5e300, -1, 18446744073709551615, null, true, {}],'
        b' "anonymous-storage-FURL": "pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:7750/swiss"}',
        b'{"service-name": "introducer", "service-name": "storage"}',
        b'{"service-name": 1}',
        # A float with more digits than an f64 holds (finding 4).
        b'{"service-name": "storage", "x": 917.5048285057433917e-125}',
        b'["service-name"]',
    ]:
        put("announcement", b"\x02" + msg)
        put("announcement", b"\x08" + msg)


if __name__ == "__main__":
    main()
