"""Run a scripted sequence of storage operations against Tahoe-LAFS's own
StorageServer, in process, and print the results as JSON.

Usage: store_diff.py OPS_JSON STORAGE_DIR

The operations are those of swampgate's storage seam (StorageApi); each is carried
out the way Tahoe 1.20's servers carry it out: on allmydata.storage.server's
StorageServer, with the upload-secret bookkeeping of its HTTP server
(allmydata.storage.http_server.UploadsInProgress) and its rules for what is "not
found" or "not allowed". Every error is reported as the name of the seam's
StorageError variant it corresponds to. The Rust side (tests/it/store.rs) runs the same
operations against swampgate's embedded store and compares, result by result, and
then compares every share file byte for byte (the "files" dump printed last).

Each operation carries "t", the time in seconds the server's clock shows for it
(lease expiry is t + 31 days; uploads idle for 30 minutes are aborted).
"""

import json
import os
import sys

from twisted.internet.task import Clock

from allmydata.interfaces import (
    BadWriteEnablerError,
    ConflictingWriteError,
    DataTooLargeError,
    NoSpace,
)
from allmydata.storage.common import (
    UnknownImmutableContainerVersionError,
    UnknownMutableContainerVersionError,
)
from allmydata.storage.http_server import UploadsInProgress, _HTTPError
from allmydata.storage.server import StorageServer

NODEID = bytes([0x11]) * 20


def secret(tag):
    """The 32-byte secret the Rust side derives from the same tag."""
    return tag.encode("ascii").ljust(32, b".")


class Err(Exception):
    def __init__(self, kind, msg=None):
        self.kind = kind
        self.msg = msg


def upload_bucket(uploads, si, sh, upload_secret):
    try:
        return uploads.get_write_bucket(si, sh, upload_secret)
    except _HTTPError as e:
        raise Err({401: "WrongUploadSecret", 404: "NotFound"}[e.code])


def share_exists(ss, si, sh):
    return any(n == sh for (n, _) in ss.get_shares(si))


def immutable_reader(ss, si, sh):
    buckets = ss.get_buckets(si)
    if sh not in buckets:
        raise Err("NotFound")
    return buckets[sh]


def readv_result(datav):
    return {str(sh): [d.hex() for d in v] for sh, v in sorted(datav.items())}


def run(ss, uploads, op):
    kind = op["op"]
    si = bytes.fromhex(op["si"])
    if kind == "allocate":
        already, writers = ss.allocate_buckets(
            si,
            secret("renew-" + op["lease"]),
            secret("cancel-" + op["lease"]),
            set(op["shares"]),
            op["size"],
        )
        for sh, bw in writers.items():
            uploads.add_write_bucket(si, sh, secret(op["upload"]), bw)
        return {"already_have": sorted(already), "allocated": sorted(writers)}
    if kind == "write":
        bw = upload_bucket(uploads, si, op["sh"], secret(op["upload"]))
        finished = bw.write(op["offset"], bytes.fromhex(op["data"]))
        required = [[s, e] for (s, e, _) in bw.required_ranges().ranges()]
        if finished:
            # As Tahoe's HTTP server does on the write that completes a share.
            bw.close()
        return {"required": required}
    if kind == "close":
        try:
            bw = upload_bucket(uploads, si, op["sh"], secret(op["upload"]))
        except Err as e:
            # The seam's contract: closing a share already completed is harmless.
            if e.kind == "NotFound" and share_exists(ss, si, op["sh"]):
                return None
            raise
        bw.close()
        return None
    if kind == "abort":
        try:
            bw = upload_bucket(uploads, si, op["sh"], secret(op["upload"]))
        except Err as e:
            if e.kind == "NotFound" and op["sh"] in ss.get_buckets(si):
                raise Err("NotAllowed")
            raise
        bw.abort()
        return None
    if kind == "list_immutable":
        return sorted(ss.get_buckets(si))
    if kind == "read_immutable":
        return immutable_reader(ss, si, op["sh"]).read(op["offset"], op["length"]).hex()
    if kind == "immutable_length":
        return immutable_reader(ss, si, op["sh"]).get_length()
    if kind == "add_lease":
        if not list(ss.get_shares(si)):
            raise Err("NotFound")
        ss.add_lease(si, secret("renew-" + op["lease"]), secret("cancel-" + op["lease"]))
        return None
    if kind == "advise_corrupt":
        if not share_exists(ss, si, op["sh"]):
            raise Err("NotFound")
        ss.advise_corrupt_share(
            op["type"].encode("ascii"), si, op["sh"], op["reason"].encode("utf-8")
        )
        return None
    if kind == "rtw":
        vectors = {
            int(sh): (
                [(o, len(bytes.fromhex(s)), b"eq", bytes.fromhex(s)) for (o, s) in v["test"]],
                [(o, bytes.fromhex(d)) for (o, d) in v["write"]],
                v["new_length"],
            )
            for sh, v in op["vectors"].items()
        }
        success, data = ss.slot_testv_and_readv_and_writev(
            si,
            (
                bytes.fromhex(op["we"]),
                secret("renew-" + op["lease"]),
                secret("cancel-" + op["lease"]),
            ),
            vectors,
            [tuple(r) for r in op["readv"]],
        )
        return {"success": success, "data": readv_result(data)}
    if kind == "list_mutable":
        return sorted(ss.enumerate_mutable_shares(si))
    if kind == "read_mutable":
        ss.get_mutable_share_length(si, op["sh"])
        return ss.slot_readv(si, [op["sh"]], [(op["offset"], op["length"])])[op["sh"]][0].hex()
    if kind == "mutable_length":
        return ss.get_mutable_share_length(si, op["sh"])
    if kind == "slot_readv":
        return readv_result(ss.slot_readv(si, op["shares"], [tuple(r) for r in op["readv"]]))
    raise ValueError("unknown operation %r" % (kind,))


ERRORS = [
    (ConflictingWriteError, "ConflictingWrite"),
    (DataTooLargeError, "DataTooLarge"),
    (BadWriteEnablerError, "BadWriteEnabler"),
    (UnknownImmutableContainerVersionError, "WrongContainer"),
    (UnknownMutableContainerVersionError, "WrongContainer"),
    (NoSpace, "NoSpace"),
    (KeyError, "NotFound"),
]


def outcome(ss, uploads, op):
    try:
        return {"ok": run(ss, uploads, op)}
    except Err as e:
        return {"err": e.kind}
    except Exception as e:
        for cls, name in ERRORS:
            if isinstance(e, cls):
                out = {"err": name}
                if name == "BadWriteEnabler":
                    out["msg"] = str(e)
                return out
        raise


def dump(storedir):
    """Every finished share file and corruption report, by path, in hex."""
    files = {}
    reports = []
    for top, dirs, names in os.walk(storedir):
        rel = os.path.relpath(top, storedir)
        dirs[:] = [d for d in dirs if os.path.join(rel, d) != os.path.join("shares", "incoming")]
        for n in names:
            path = os.path.join(top, n)
            with open(path, "rb") as f:
                content = f.read()
            if rel.startswith("shares"):
                files[os.path.join(rel, n)] = content.hex()
            elif rel == "corruption-advisories":
                reports.append(content.decode("utf-8"))
    return {"shares": files, "reports": sorted(reports)}


def main():
    with open(sys.argv[1]) as f:
        ops = json.load(f)
    storedir = sys.argv[2]
    clock = Clock()
    ss = StorageServer(storedir, NODEID, clock=clock)
    uploads = UploadsInProgress()
    ss.register_bucket_writer_close_handler(uploads.remove_write_bucket)
    results = []
    for op in ops:
        if op["t"] > clock.seconds():
            clock.advance(op["t"] - clock.seconds())
        results.append(outcome(ss, uploads, op))
    json.dump({"results": results, "files": dump(storedir)}, sys.stdout)


if __name__ == "__main__":
    main()
