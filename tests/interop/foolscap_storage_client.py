"""Drive a storage server over Foolscap with Tahoe-LAFS's own client code.

usage: python foolscap_storage_client.py STORAGE_FURL

Connects with a Tub configured as Tahoe configures its own (create_tub_options),
wraps the reference in Tahoe's `_StorageServer`, runs a fixed sequence of storage
operations (immutable and mutable, successes and errors) and prints one JSON object:
{step name: result}. Results hold no figures that differ between servers (free
space, versions, node ids), so the outputs of two servers can be compared directly.
"""

import json
import os
import sys

from twisted.internet import defer, task
from twisted.python.failure import Failure
from foolscap.api import Tub, Referenceable

from allmydata.storage_client import _StorageServer


def norm(v):
    """A JSON-able form that keeps bytes and text apart."""
    if isinstance(v, bytes):
        return {"b": v.decode("latin-1")}
    if isinstance(v, str):
        return {"s": v}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return {"set": sorted(norm(x) for x in v)}
    if isinstance(v, dict):
        return {"dict": sorted([norm(k), norm(x)] for k, x in v.items())}
    if v is None or isinstance(v, (bool, int)):
        return v
    return {"ref": True}


def error_type(f):
    """The remote exception class name of a failure (RemoteException wraps it)."""
    e = f.value
    inner = getattr(e, "failure", None)
    if inner is not None:
        t = inner.parents[0]
        return t.decode() if isinstance(t, bytes) else str(t)
    return type(e).__module__ + "." + type(e).__name__


class Canary(Referenceable):
    pass


@defer.inlineCallbacks
def main(reactor, furl):
    tub = Tub()
    tub.setOption("logLocalFailures", True)
    tub.setOption("logRemoteFailures", True)
    tub.setOption("expose-remote-exception-types", False)
    tub.setOption("accept-gifts", False)
    tub.startService()
    rref = yield tub.getReference(furl)
    ss = _StorageServer(get_rref=lambda: rref)
    out = {}

    @defer.inlineCallbacks
    def step(name, d):
        try:
            r = yield d
            out[name] = {"ok": norm(r)}
        except Exception:
            out[name] = {"error": error_type(Failure())}
        return out[name]

    si = os.urandom(16)
    si2 = os.urandom(16)
    renew, cancel = b"R" * 32, b"C" * 32
    we = b"W" * 32

    v = yield ss.get_version()
    v1 = v[b"http://allmydata.org/tahoe/protocols/storage/v1"]
    out["version-keys"] = sorted(k.decode() for k in v1)
    out["version-flags"] = {k.decode(): x for k, x in v1.items() if isinstance(x, bool)}
    out["version-has-app"] = b"application-version" in v

    canary = Canary()
    already, writers = yield ss.allocate_buckets(si, renew, cancel, {0, 1, 2}, 100, canary)
    out["allocate"] = {"already": sorted(already), "writers": sorted(writers)}
    w0, w1, w2 = writers[0], writers[1], writers[2]
    yield step("w0-write-a", w0.callRemote("write", 0, b"A" * 60))
    yield step("w0-write-b", w0.callRemote("write", 60, b"B" * 40))
    yield step("w0-rewrite-same", w0.callRemote("write", 0, b"A" * 10))
    yield step("w0-close", w0.callRemote("close"))
    yield step("w1-write", w1.callRemote("write", 0, b"x" * 10))
    yield step("w1-too-large", w1.callRemote("write", 95, b"X" * 10))
    yield step("w1-conflict", w1.callRemote("write", 5, b"y" * 10))
    yield step("w1-abort", w1.callRemote("abort"))
    yield step("w2-write", w2.callRemote("write", 0, b"z" * 50))
    yield step("w2-close-incomplete", w2.callRemote("close"))

    already, writers = yield ss.allocate_buckets(si, renew, cancel, {0, 1, 2, 3}, 100, canary)
    out["reallocate"] = {"already": sorted(already), "writers": sorted(writers)}
    for w in writers.values():
        yield w.callRemote("abort")

    readers = yield ss.get_buckets(si)
    out["get_buckets"] = sorted(readers)
    r0 = readers[0]
    yield step("read-all", r0.callRemote("read", 0, 100))
    yield step("read-overrun", r0.callRemote("read", 90, 100))
    yield step("read-past-end", r0.callRemote("read", 200, 10))
    yield step("read-hole", readers[2].callRemote("read", 45, 10))
    # RIBucketReader.read takes an Offset (8 bytes, signed) and any int as length.
    yield step("read-negative-length", r0.callRemote("read", 10, -5))
    yield step("read-huge-length", r0.callRemote("read", 90, 2**70))
    yield step("read-negative-offset", r0.callRemote("read", -1, 10))
    yield step("reader-corrupt-not-utf8", r0.callRemote("advise_corrupt_share", b"\xff"))
    yield step("reader-corrupt", r0.callRemote("advise_corrupt_share", b"looks bad"))
    yield step("ss-corrupt", ss.advise_corrupt_share(b"immutable", si, 0, b"reason"))
    yield step("ss-corrupt-unknown", ss.advise_corrupt_share(b"immutable", os.urandom(16), 0, b"reason"))
    # Any int is a share number to RIStorageServer; one no server can hold is ignored.
    yield step("ss-corrupt-shnum-999", ss.advise_corrupt_share(b"immutable", si, 999, b"ono"))
    yield step("ss-corrupt-shnum-negative", ss.advise_corrupt_share(b"immutable", si, -1, b"ono"))
    # share_type is any bytes to RIStorageServer: Tahoe finds the share by storage
    # index and number alone. (Called on the reference: Tahoe's client logs and
    # swallows the errors of advise_corrupt_share.)
    yield step("ss-corrupt-other-type", rref.callRemote("advise_corrupt_share", b"other", si, 0, b"reason"))
    yield step("ss-corrupt-empty-type-unknown", rref.callRemote("advise_corrupt_share", b"", os.urandom(16), 0, b"reason"))
    yield step("ss-corrupt-mutable-type-on-immutable", rref.callRemote("advise_corrupt_share", b"mutable", si, 0, b"reason"))
    # It writes type and reason into its report as text: not UTF-8 fails, for a share it has.
    yield step("ss-corrupt-reason-not-utf8", rref.callRemote("advise_corrupt_share", b"immutable", si, 0, b"\xff"))
    yield step("ss-corrupt-reason-not-utf8-unknown", rref.callRemote("advise_corrupt_share", b"immutable", si, 7, b"\xff"))
    yield step("add-lease", ss.add_lease(si, b"r" * 32, b"c" * 32))
    yield step("add-lease-unknown", ss.add_lease(os.urandom(16), b"r" * 32, b"c" * 32))
    yield step("get_buckets-unknown", ss.get_buckets(os.urandom(16)))
    yield step("violation-si-too-long", rref.callRemote("get_buckets", b"x" * 17))

    def rtw(secrets, tw, rv):
        return ss.slot_testv_and_readv_and_writev(si2, secrets, tw, rv)

    yield step("rtw-create", rtw((we, renew, cancel), {0: ([(0, 1, b"")], [(0, b"mutable data v1")], None)}, [(0, 10)]))
    yield step("rtw-create-again-fails", rtw((we, renew, cancel), {0: ([(0, 1, b"")], [(0, b"other")], None)}, [(0, 7)]))
    yield step("slot_readv", ss.slot_readv(si2, [0], [(0, 30)]))
    yield step("slot_readv-all", ss.slot_readv(si2, [], [(0, 7), (8, 4)]))
    yield step("slot_readv-missing", ss.slot_readv(si2, [5], [(0, 7)]))
    yield step("slot_readv-none", ss.slot_readv(si2, [], []))
    yield step("rtw-update", rtw((we, renew, cancel), {0: ([(0, 7, b"mutable")], [(8, b"DATA")], None)}, [(0, 10)]))
    yield step("rtw-second-share", rtw((we, renew, cancel), {1: ([], [(0, b"one"), (10, b"hole")], None)}, []))
    yield step("slot_readv-hole", ss.slot_readv(si2, [1], [(0, 14), (100, 5)]))
    yield step("rtw-test-fails", rtw((we, renew, cancel), {0: ([(0, 3, b"xyz")], [(0, b"nope")], None)}, [(0, 4)]))
    yield step("rtw-bad-write-enabler", rtw((b"w" * 32, renew, cancel), {0: ([], [(0, b"nope")], None)}, []))
    yield step("rtw-truncate", rtw((we, renew, cancel), {0: ([], [], 5)}, [(0, 20)]))
    yield step("rtw-delete", rtw((we, renew, cancel), {1: ([], [], 0)}, []))
    yield step("slot_readv-after", ss.slot_readv(si2, [], [(0, 20)]))
    yield step("add-lease-mutable", ss.add_lease(si2, b"r" * 32, b"c" * 32))
    yield step("mutable-corrupt", ss.advise_corrupt_share(b"mutable", si2, 0, b"reason"))
    yield step("mutable-corrupt-shnum-999", ss.advise_corrupt_share(b"mutable", si2, 999, b"ono"))
    # Share numbers are any int to RIStorageServer (int: up to 1024 bytes), not 0..255.
    # ReadSize is any int: a size beyond 2**64 reads to the end of the data.
    yield step("slot_readv-huge-size", ss.slot_readv(si2, [0], [(1, 2**70)]))
    yield step("rtw-huge-sizes", rtw((we, renew, cancel), {0: ([(0, 2**70, b"mutab")], [], None)}, [(2, 2**70)]))
    yield step("slot_readv-shnum-300", ss.slot_readv(si2, [300], [(0, 5)]))
    yield step("rtw-shnum-300", rtw((we, renew, cancel), {300: ([], [(0, b"three hundred")], None)}, [(0, 5)]))
    yield step("slot_readv-shnum-300-after", ss.slot_readv(si2, [300], [(0, 5)]))
    si3 = os.urandom(16)
    try:
        already, writers = yield ss.allocate_buckets(si3, renew, cancel, {300, 1000}, 10, canary)
        out["allocate-shnum-300"] = {"already": sorted(already), "writers": sorted(writers)}
        yield step("write-shnum-300", writers[300].callRemote("write", 0, b"0123456789"))
        yield step("close-shnum-300", writers[300].callRemote("close"))
        yield step("write-negative-offset", writers[1000].callRemote("write", -1, b"x"))
        yield step("abort-shnum-1000", writers[1000].callRemote("abort"))
    except Exception:
        out["allocate-shnum-300"] = {"error": error_type(Failure())}
    yield step("get_buckets-shnum-300", ss.get_buckets(si3))
    yield step("mutable-corrupt-other-type", rref.callRemote("advise_corrupt_share", b"\xff\x00", si2, 0, b"reason"))
    yield step("mutable-corrupt-immutable-type", rref.callRemote("advise_corrupt_share", b"immutable", si2, 0, b"reason"))

    print(json.dumps(out, sort_keys=True))
    yield tub.stopService()


if __name__ == "__main__":
    task.react(main, (sys.argv[1],))
