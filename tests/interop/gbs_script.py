"""Drive one GBS server with Tahoe-LAFS 1.20's own HTTP storage client.

Usage: python gbs_script.py NURL OUT_JSON

Runs a fixed sequence of storage operations (every GBS endpoint, immutable and
mutable, the error cases, and a few raw requests with bad input) through
``allmydata.storage.http_client`` and writes one JSON object mapping each step's name
to its outcome: the decoded result, or ``{"error": HTTP status}`` for a
``ClientException``. The same script is run against a real Tahoe node and against
swampgate, and the Rust test compares the two outputs.

Values that legitimately differ between servers (free space, application version) are
recorded by type only. Storage indexes and secrets are fixed, so a server must start
empty.
"""

import hashlib
import json
import sys
from base64 import b64encode

from hyperlink import DecodedURL
from twisted.internet import defer, task
from twisted.web.http_headers import Headers

from allmydata.storage.http_client import (
    ClientException,
    ReadVector,
    StorageClientFactory,
    StorageClientGeneral,
    StorageClientImmutables,
    StorageClientMutables,
    TestVector,
    TestWriteVectors,
    WriteVector,
)
from allmydata.util.cbor import dumps


def si(n):
    return hashlib.sha256(b"swampgate-interop-%d" % n).digest()[:16]


def secret(name, n=32):
    return hashlib.sha256(b"secret-" + name).digest()[:n]


RENEW = secret(b"renew")
CANCEL = secret(b"cancel")
UPLOAD = secret(b"upload", 20)
UPLOAD2 = secret(b"upload2", 20)
WE = secret(b"write-enabler")
BAD_WE = secret(b"bad-write-enabler")


def plain(value):
    """Make a result JSON-friendly and order-independent."""
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, dict):
        return {str(plain_key(k)): plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def plain_key(k):
    return k.decode("ascii") if isinstance(k, bytes) else k


async def outcome(d):
    try:
        return {"ok": plain(await d)}
    except ClientException as e:
        return {"error": e.code}
    except Exception as e:  # a client-side refusal, e.g. an empty Range
        return {"exception": type(e).__name__}


def progress(p):
    return {
        "finished": p.finished,
        "required": sorted([start, end] for start, end, _ in p.required.ranges()),
    }


async def main(reactor, nurl_text, out_path):
    nurl = DecodedURL.from_text(nurl_text)
    factory = StorageClientFactory({"tcp": "tcp"}, None)
    client = await factory.create_storage_client(nurl, reactor)
    general = StorageClientGeneral(client)
    imm = StorageClientImmutables(client)
    mut = StorageClientMutables(client)
    results = {}

    async def step(name, d):
        results[name] = await outcome(d)

    async def write(name, s, sh, secret_, offset, data):
        try:
            results[name] = {"ok": progress(await imm.write_share_chunk(s, sh, secret_, offset, data))}
        except ClientException as e:
            results[name] = {"error": e.code}

    # -- general
    version = await general.get_version()
    v1 = version[b"http://allmydata.org/tahoe/protocols/storage/v1"]
    results["version"] = {
        "keys": sorted(plain_key(k) for k in version),
        "v1": {plain_key(k): type(v).__name__ for k, v in sorted(v1.items())},
        "application-version-type": type(version[b"application-version"]).__name__,
    }

    # -- immutable
    s1 = si(1)
    data = bytes((i * 7 + 3) % 256 for i in range(100))
    r = await imm.create(s1, {0, 1, 2}, 100, UPLOAD, RENEW, CANCEL)
    results["create"] = plain({"already_have": r.already_have, "allocated": r.allocated})
    r = await imm.create(s1, {0, 1, 2}, 100, UPLOAD, RENEW, CANCEL)
    results["create again"] = plain({"already_have": r.already_have, "allocated": r.allocated})
    r = await imm.create(s1, {1, 3}, 100, UPLOAD2, RENEW, CANCEL)
    results["create other secret"] = plain({"already_have": r.already_have, "allocated": r.allocated})
    r = await imm.create(si(5), {0, 1}, 2**63, UPLOAD, RENEW, CANCEL)
    results["create too large"] = plain({"already_have": r.already_have, "allocated": r.allocated})
    r = await imm.create(si(6), {255, 300}, 10, UPLOAD, RENEW, CANCEL)
    results["create large share numbers"] = plain({"already_have": r.already_have, "allocated": r.allocated})
    await write("write 0-40", s1, 0, UPLOAD, 0, data[:40])
    await write("write 0-40 again", s1, 0, UPLOAD, 0, data[:40])
    await write("write 60-80", s1, 0, UPLOAD, 60, data[60:80])
    await write("write conflicting", s1, 0, UPLOAD, 0, b"x" * 40)
    await write("write wrong secret", s1, 0, UPLOAD2, 40, data[40:60])
    await write("write past end", s1, 2, UPLOAD, 90, b"y" * 20)
    await write("write rest", s1, 0, UPLOAD, 40, data[40:])
    await write("write after completion", s1, 0, UPLOAD, 0, data[:10])
    await write("write unallocated", s1, 9, UPLOAD, 0, data[:10])
    await write("write unknown si", si(99), 0, UPLOAD, 0, data[:10])
    await write("write share 1 partly", s1, 1, UPLOAD, 0, data[:10])
    await step("read 0-10", imm.read_share_chunk(s1, 0, 0, 10))
    await step("read past end", imm.read_share_chunk(s1, 0, 95, 50))
    await step("read at end", imm.read_share_chunk(s1, 0, 100, 10))
    await step("read far past end", imm.read_share_chunk(s1, 0, 1000, 10))
    await step("read whole", imm.read_share_chunk(s1, 0, 0, 100))
    await step("read length 0", imm.read_share_chunk(s1, 0, 5, 0))
    await step("read in progress", imm.read_share_chunk(s1, 1, 0, 10))
    await step("read unknown share", imm.read_share_chunk(s1, 7, 0, 10))
    await step("read unknown si", imm.read_share_chunk(si(99), 0, 0, 10))
    await step("list shares", imm.list_shares(s1))
    await step("list shares unknown si", imm.list_shares(si(99)))
    await step("abort wrong secret", imm.abort_upload(s1, 1, UPLOAD2))
    await step("abort", imm.abort_upload(s1, 1, UPLOAD))
    await step("abort again", imm.abort_upload(s1, 1, UPLOAD))
    await step("abort completed", imm.abort_upload(s1, 0, UPLOAD))
    await step("abort unknown si", imm.abort_upload(si(99), 0, UPLOAD))
    r = await imm.create(s1, {0, 1}, 100, UPLOAD, RENEW, CANCEL)
    results["create after abort"] = plain({"already_have": r.already_have, "allocated": r.allocated})
    await step("lease", general.add_or_renew_lease(s1, RENEW, CANCEL))
    await step("lease new secrets", general.add_or_renew_lease(s1, secret(b"r2"), secret(b"c2")))
    await step("lease unknown si", general.add_or_renew_lease(si(99), RENEW, CANCEL))
    await step("corrupt", imm.advise_corrupt_share(s1, 0, "bad hash"))
    await step("corrupt unknown share", imm.advise_corrupt_share(s1, 7, "bad hash"))

    # -- a chunked upload of a larger share, read back in chunks
    s2 = si(2)
    big = hashlib.sha256(b"big").digest() * (3 * 1024 * 1024 // 32 + 11)
    await imm.create(s2, {0}, len(big), UPLOAD, RENEW, CANCEL)
    chunk = 1024 * 1024
    finished = []
    for offset in range(0, len(big), chunk):
        p = await imm.write_share_chunk(s2, 0, UPLOAD, offset, big[offset : offset + chunk])
        finished.append(p.finished)
    back = b""
    while len(back) < len(big) + 1:
        piece = await imm.read_share_chunk(s2, 0, len(back), 700000)
        if not piece:
            break
        back += piece
    results["chunked upload"] = {
        "finished": finished,
        "round trip": back == big,
        "length": len(back),
    }

    # -- mutable
    s3 = si(3)

    async def rtw(name, tw, rv, we=WE):
        try:
            r = await mut.read_test_write_chunks(s3, we, RENEW, CANCEL, tw, rv)
            results[name] = {"ok": plain({"success": r.success, "reads": r.reads})}
        except ClientException as e:
            results[name] = {"error": e.code}

    def create(d):
        return TestWriteVectors(
            test_vectors=[TestVector(0, 1, b"")],
            write_vectors=[WriteVector(0, d)],
        )

    await rtw("rtw create", {0: create(b"0123456789"), 1: create(b"abcdefghij")}, [])
    await rtw("rtw create again", {0: create(b"ZZZ")}, [ReadVector(0, 3)])
    await rtw("rtw read only", {}, [ReadVector(0, 3), ReadVector(8, 10)])
    await rtw(
        "rtw failing test",
        {0: TestWriteVectors(test_vectors=[TestVector(0, 3, b"xxx")], write_vectors=[WriteVector(0, b"ZZZ")])},
        [ReadVector(0, 3)],
    )
    await rtw(
        "rtw passing test",
        {0: TestWriteVectors(test_vectors=[TestVector(0, 3, b"012")], write_vectors=[WriteVector(3, b"ABC")])},
        [ReadVector(0, 10)],
    )
    await rtw("rtw bad write enabler", {0: TestWriteVectors(write_vectors=[WriteVector(0, b"Q")])}, [], BAD_WE)
    await rtw("rtw bad write enabler read only", {}, [ReadVector(0, 3)], BAD_WE)
    await rtw(
        "rtw hole and truncate",
        {1: TestWriteVectors(write_vectors=[WriteVector(20, b"Z")], new_length=15)},
        [ReadVector(0, 100)],
    )
    await rtw("rtw read after", {}, [ReadVector(0, 100)])
    await rtw("rtw new share without writes", {5: TestWriteVectors()}, [])
    await rtw("rtw delete", {1: TestWriteVectors(new_length=0)}, [])
    await step("mutable list", mut.list_shares(s3))
    await step("mutable list unknown si", mut.list_shares(si(99)))
    await step("mutable read 0-5", mut.read_share_chunk(s3, 0, 0, 5))
    await step("mutable read past end", mut.read_share_chunk(s3, 0, 8, 100))
    await step("mutable read at end", mut.read_share_chunk(s3, 0, 10, 5))
    await step("mutable read empty share", mut.read_share_chunk(s3, 5, 0, 5))
    await step("mutable read deleted", mut.read_share_chunk(s3, 1, 0, 5))
    await step("mutable corrupt", mut.advise_corrupt_share(s3, 0, "bad signature"))
    await step("mutable corrupt unknown", mut.advise_corrupt_share(s3, 7, "bad signature"))
    await step("mutable lease", general.add_or_renew_lease(s3, RENEW, CANCEL))
    try:
        await mut.read_test_write_chunks(s1, WE, RENEW, CANCEL, {}, [])
        results["rtw on immutable si"] = {"ok": None}
    except ClientException as e:
        results["rtw on immutable si"] = {"error": e.code}

    # -- raw requests with bad input, through the same pinned connection pool
    base = "/storage/v1"

    async def raw(name, method, path, headers=None, data=None, **secrets):
        h = Headers()
        for k, v in (headers or {}).items():
            h.addRawHeader(k, v)
        kwargs = {"data": data} if data is not None else {}
        response = await client.request(method, client.relative_url(base + path), headers=h, **secrets, **kwargs)
        body = await response.content()
        results[name] = {"status": response.code}
        return response.code, body

    si1 = "/immutable/" + client_si(s1)
    cbor = {"Content-Type": "application/cbor"}
    ok_alloc = dumps({"share-numbers": {5}, "allocated-size": 10})
    await raw("raw lease missing cancel secret", "PUT", "/lease/" + client_si(s1), lease_renew_secret=RENEW)
    await raw("raw lease short secret", "PUT", "/lease/" + client_si(s1), lease_renew_secret=RENEW[:31], lease_cancel_secret=CANCEL)
    await raw("raw allocate no secrets", "POST", si1, cbor, ok_alloc)
    await raw("raw allocate malformed cbor", "POST", si1, cbor, b"\xff\x00", **alloc_secrets())
    await raw(
        "raw allocate untagged set",
        "POST",
        si1,
        cbor,
        dumps({"share-numbers": [5], "allocated-size": 10}),
        **alloc_secrets(),
    )
    await raw(
        "raw allocate extra key",
        "POST",
        si1,
        cbor,
        dumps({"share-numbers": {5}, "allocated-size": 10, "x": 1}),
        **alloc_secrets(),
    )
    await raw("raw allocate oversized", "POST", si1, cbor, ok_alloc + b"\0" * 9000, **alloc_secrets())
    await raw("raw allocate wrong content type", "POST", si1, {"Content-Type": "text/plain"}, ok_alloc, **alloc_secrets())
    await raw("raw patch no content-range", "PATCH", si1 + "/2", {}, b"abc", upload_secret=UPLOAD)
    await raw("raw patch garbled content-range", "PATCH", si1 + "/2", {"Content-Range": "bytes x-y/*"}, b"abc", upload_secret=UPLOAD)
    await raw("raw patch short body", "PATCH", si1 + "/2", {"Content-Range": "bytes 0-15/*"}, b"abc", upload_secret=UPLOAD)
    for label, rng in [("open", "bytes=0-"), ("suffix", "bytes=-5"), ("multi", "bytes=0-1,3-4"), ("garbage", "foo")]:
        await raw("raw read range " + label, "GET", si1 + "/0", {"Range": rng})
    code, body = await raw("raw read no range", "GET", si1 + "/0")
    results["raw read no range"]["length"] = len(body)
    await raw("raw bad storage index", "GET", "/immutable/" + client_si(s1)[:-1] + "/shares")
    await raw("raw unknown path", "GET", "/nope")
    await raw("raw corrupt empty reason", "POST", si1 + "/0/corrupt", cbor, dumps({"reason": ""}))
    await raw("raw corrupt too long", "POST", si1 + "/0/corrupt", cbor, dumps({"reason": "x" * 32766}))
    await raw("raw rtw 31 read vectors", "POST", "/mutable/" + client_si(s3) + "/read-test-write", cbor,
              dumps({"test-write-vectors": {}, "read-vector": [{"offset": 0, "size": 1}] * 31}),
              lease_renew_secret=RENEW, lease_cancel_secret=CANCEL, write_enabler_secret=WE)
    await raw("raw version accept json", "GET", "/version", {"Accept": "application/json"})
    await raw("raw version accept any", "GET", "/version", {"Accept": "*/*"})
    await raw("raw allocate json body", "POST", "/immutable/" + client_si(si(4)), {"Content-Type": "application/json"},
              json.dumps({"share-numbers": [1], "allocated-size": 10}).encode(), **alloc_secrets())

    # -- a wrong swissnum
    bad_nurl = nurl.replace(path=("wrongswissnum",))
    bad_client = await factory.create_storage_client(bad_nurl, reactor)
    try:
        await StorageClientGeneral(bad_client).get_version()
        results["wrong swissnum"] = {"ok": None}
    except ClientException as e:
        results["wrong swissnum"] = {"error": e.code}
    await bad_client.shutdown()

    await client.shutdown()
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)


def client_si(s):
    from allmydata.storage.http_client import _encode_si

    return _encode_si(s)


def alloc_secrets():
    return {"lease_renew_secret": RENEW, "lease_cancel_secret": CANCEL, "upload_secret": UPLOAD}


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1], sys.argv[2])))
