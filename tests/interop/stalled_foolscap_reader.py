"""A Foolscap storage client that asks for a large immutable share and stops
reading the answer.

Usage:
  python stalled_foolscap_reader.py FURL STORAGE_INDEX_BASE32 SHNUM LENGTH STALL_SECS

Connects with foolscap (Tahoe 1.20's), calls `get_buckets`, then pauses the
connection's transport (Twisted stops reading the socket) and calls `read(0,
LENGTH)` on the share's bucket reader. After STALL_SECS it resumes reading and waits
(at most 60 s) for the outcome. Prints one JSON line:
  {"outcome": "answered", "bytes": N} or {"outcome": "lost", "failure": "..."}
"""

import json
import sys

from twisted.internet import defer, reactor, task

from allmydata import interfaces  # noqa: F401  (registers RIStorageServer)
from allmydata.util import base32
from foolscap.api import Tub

result = {}


@defer.inlineCallbacks
def main(furl, si, shnum, length, stall):
    tub = Tub()
    tub.startService()
    rref = yield tub.getReference(furl)
    buckets = yield rref.callRemote("get_buckets", si)
    reader = buckets[shnum]
    transport = rref.tracker.broker.transport
    transport.pauseProducing()
    d = reader.callRemote("read", 0, length)

    def answered(data):
        result.update(outcome="answered", bytes=len(data))

    def lost(f):
        result.update(outcome="lost", failure=str(f.type.__name__) + ": " + str(f.value)[:300])

    d.addCallbacks(answered, lost)
    yield task.deferLater(reactor, stall, lambda: None)
    transport.resumeProducing()
    timeout = reactor.callLater(60, d.cancel)
    yield d
    if timeout.active():
        timeout.cancel()
    yield tub.stopService()


def run():
    furl, si, shnum, length, stall = sys.argv[1:6]
    d = main(furl, base32.a2b(si.encode("ascii")), int(shnum), int(length), float(stall))

    def done(_):
        print(json.dumps(result), flush=True)
        reactor.stop()

    def failed(f):
        print(json.dumps({"outcome": "error", "failure": str(f)}), flush=True)
        reactor.stop()

    d.addCallbacks(done, failed)
    reactor.run()


if __name__ == "__main__":
    run()
