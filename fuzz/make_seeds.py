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
    announcement_store()
    nodedir()
    accounting()
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


def announcement_store():
    """announcement_store: the relay's announcements file, as persist.rs writes it,
    holding the announcements captured from Tahoe (fixtures/)."""
    doc = json.loads((ROOT / "fixtures/introducer-announcements.json").read_text())
    anns = doc["announcements"]

    def store(entries, fmt="swampgate-announcements/1"):
        return json.dumps({"format": fmt, "announcements": entries}, indent=2).encode()

    def entry(a, origin):
        return {"origin": origin, "key": a["key"], "sig": a["sig"], "msg": a["msg"]}

    put("announcement_store", store([entry(a, "local") for a in anns]))
    put("announcement_store", store([entry(a, "upstream") for a in anns]))
    put("announcement_store", store([entry(a, o) for a in anns for o in ("local", "upstream")]))
    put("announcement_store", store([]))
    put("announcement_store", store([], fmt="other/9"))
    damaged = entry(anns[0], "local")
    damaged["msg"] = damaged["msg"].replace("storage", "storagE", 1)
    put("announcement_store", store([damaged, entry(anns[1], "local")]))
    put("announcement_store", store([{**entry(anns[0], "local"), "key": anns[1]["key"]}]))


# A node dir as Tahoe 1.20 leaves it after its first start (as in
# src/nodedir/tests.rs); TUBID stands for the key's tubid in the target.
TAHOE_CFG = (
    "# -*- mode: conf; coding: utf-8 -*-\n[node]\nnickname = storage1\nweb.port =\n"
    "tub.port = tcp:3457:interface=127.0.0.1\ntub.location = tcp:127.0.0.1:3457\n\n"
    "[storage]\nenabled = true\nreserved_space = 0\n"
)
SWISS = "yci4erqgi6kgb3ybym4y3qlox2zawafr"
PUBKEY = "pub-v0-4tr4e5ozcgqmqvxszbcbvfmn4seutiwtfrx4k5rzpzf36sxdbwoq\n"


def nodedir():
    """nodedir: byte 0 is the release (bit 0) and the files left out (bits 1-5:
    tahoe.cfg, client.port, private/storage.furl, node.pubkey, permutation-seed);
    the rest the files' texts, NUL-separated."""
    def node(cfg, hints, ctl=0, client_port="", pubkey=PUBKEY, seed="seedseed\n"):
        furl = f"pb://TUBID@{hints}/{SWISS}\n"
        put("nodedir", bytes([ctl]) + "\0".join([cfg, client_port, furl, pubkey, seed]).encode())

    missing_client_port = 1 << 2
    node(TAHOE_CFG, "tcp:127.0.0.1:3457", missing_client_port)
    node(TAHOE_CFG, "tcp:127.0.0.1:3457", missing_client_port | 1)
    node(TAHOE_CFG + "force_foolscap = True\n", "tcp:127.0.0.1:3457", missing_client_port)
    several = "tcp:example.org:80,example.net:81,tor:abc.onion:82,i2p:x.i2p"
    node(TAHOE_CFG.replace("tub.location = tcp:127.0.0.1:3457", "tub.location = " + several),
         several, missing_client_port)
    node(TAHOE_CFG.replace("tub.location = tcp:127.0.0.1:3457",
                           "tub.location = tcp:gw.example:7000,AUTO"),
         "tcp:gw.example:7000,tcp:10.0.0.5:3457,tcp:127.0.0.1:3457", missing_client_port)
    # No tub.location (AUTO) and no tub.port: client.port's.
    node("[node]\nnickname = n\n", "tcp:192.168.1.2:4000,tcp:127.0.0.1:4000", 0, "tcp:4000\n")
    node("\ufeff[node]\nNickName = n\n  continued\ntub.port = tcp:port=3456:interface=\\:\\:1,listen:tor\n"
         "[storage]\nenabled = yes\nanonymous = On\n", "tcp:127.0.0.1:3457", missing_client_port)
    # Refusals: storage off, a port disabled, a FURL of another key, a bad pubkey.
    node("[storage]\nenabled = false\n", "tcp:127.0.0.1:3457", missing_client_port)
    node("[node]\ntub.port = disabled\n", "tcp:127.0.0.1:3457", missing_client_port)
    put("nodedir", b"\x04" + "\0".join([TAHOE_CFG, "", f"pb://l3uv64hrncybwr7t7esgrafiqoh2njjc@tcp:127.0.0.1:3457/{SWISS}",
                                          PUBKEY, "seedseed"]).encode())
    node(TAHOE_CFG, "tcp:127.0.0.1:3457", missing_client_port, pubkey="v0-x\n", seed="\n")


def toml_blocks(path):
    """The ```toml blocks of a Markdown file, or the //! ```toml blocks of a Rust file."""
    out, block = [], None
    for line in path.read_text().splitlines():
        bare = line[4:] if line.startswith("//! ") else ("" if line == "//!" else line)
        if block is None:
            if bare.strip() == "```toml":
                block = []
        elif bare.strip() == "```":
            out.append("\n".join(block) + "\n")
            block = None
        else:
            block.append(bare)
    return out


def accounting():
    """accounting: byte 0 % 3: a size, SCHEME\\0USER\\0PASSWORD\\0HOST for redact, a
    config file."""
    for s in ["10GiB", "500MB", "1.5 TiB", "1048576", "none", "NONE ", "250kB", "", "ten",
              "18446744073709551615", "18446744073709551616", "16 EiB", "1e3", "-1"]:
        put("accounting", b"\x00" + s.encode())
    for parts in [("postgres", "sg", "hunter2", "127.0.0.1:5432/sg"),
                  ("postgresql", "sg", "hun@ter2", "db.example:5432/sg?sslmode=require"),
                  ("sqlite", "", "", "/x/a.sqlite"),
                  ("mysql", "u", "p:w/x", "h/db")]:
        put("accounting", b"\x01" + "\0".join(parts).encode())
    configs = []
    for f in [ROOT / "README.md", ROOT / "MIGRATION.md", ROOT / "src/daemon/config.rs"]:
        configs += toml_blocks(f)
    configs += [
        'listen = "127.0.0.1:0"\n[accounting]\ndatabase = "postgres://sg:hunter2@127.0.0.1:5432/sg"\n'
        'reconcile_secs = 2\n[[link]]\nname = "grid"\nupstream = "local:shares"\nanonymous = false\n',
        '[accounting]\ndatabase = "mysql://u:secret@h/db"\n',
        '[accounting]\ndatabase = "postgres://u:sec@ret@h/db"\nreconcile_secs = 0\n',
        '[accounting]\nreconcile_secs = "postgres://u:secret@h"\n',
        '[[link]]\nname = "a"\nupstream = "pb://u:secret@h/x"\n',
        'listen = "postgres://u:secret@h:5"\n',
    ]
    for c in configs:
        put("accounting", b"\x02" + c.encode())


if __name__ == "__main__":
    main()
