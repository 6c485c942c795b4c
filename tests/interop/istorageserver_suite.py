"""
Tahoe-LAFS 1.20's own ``IStorageServer`` test suite
(``allmydata.test.test_istorageserver``) run against swampgate.

The suite's mixins (shared, immutable and mutable APIs) test an
``IStorageServer`` -- Tahoe's own storage *client* code -- through
``self.storage_client``, and read leases and time through ``self.server``,
``self.fake_time()`` and ``self.fake_sleep()``. The suite's ``_SharedMixin``
sets those up on an in-process Tahoe node; here they are set up on swampgate,
one placement per run, chosen by environment variables (set by
``tests/it/istorageserver.rs``, which starts swampgate):

``SWAMPGATE_SUITE_PLACEMENT``
    ``f2h``: Tahoe's Foolscap client -> swampgate -> GBS -> Tahoe's HTTP storage
    server; ``h2f``: Tahoe's HTTP client -> swampgate -> Foolscap -> Tahoe's
    Foolscap storage server; ``local-foolscap`` and ``local-gbs``: Tahoe's
    Foolscap or HTTP client -> swampgate's embedded store.
``SWAMPGATE_SUITE_URL``
    swampgate's FURL (Foolscap clients) or NURL (HTTP clients).
``SWAMPGATE_SUITE_UPSTREAM``
    (bridges) the directory written by ``make-upstream`` (below): the identity,
    port and swissnum of the upstream Tahoe storage server swampgate bridges to.
``SWAMPGATE_SUITE_STORE``, ``SWAMPGATE_SUITE_CLOCK``
    (embedded store) swampgate's store directory, and the file its store's
    clock is read from (``SWAMPGATE_TEST_CLOCK_FILE``).

Bridges: as in the suite, the upstream is a real ``StorageServer`` in this
process, with the suite's fake clock, served by Tahoe's own Foolscap
(``FoolscapStorageServer``) or HTTP (``HTTPServer``) code on a fixed loopback
port, so swampgate (started once) can be pointed at it. Like the suite's node,
it is created for each test and stopped after it (the test runner fails a test
that leaves connections or listening ports behind); swampgate reconnects.
``self.server`` is that server: lease assertions read the upstream's leases.

Embedded store: swampgate keeps Tahoe's on-disk share format (see
``src/storage/store/mod.rs``), so ``self.server`` reads the leases of
swampgate's share files with Tahoe's own ``ShareFile``/``MutableShareFile``.
The store's clock is driven as the suite drives its server's: swampgate reads
it from a file (see ``_FileClock``).

``python istorageserver_suite.py make-upstream DIR PORT foolscap|http`` writes
a new upstream identity to DIR and prints the upstream URL (FURL or NURL).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock, deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site
from hyperlink import DecodedURL

from foolscap.api import Tub, flushEventualQueue

from allmydata.test import test_istorageserver as suite
from allmydata.test.common import AsyncTestCase
from allmydata.test.common_system import spin_until_cleanup_done
from allmydata.storage.server import StorageServer, FoolscapStorageServer
from allmydata.storage.common import storage_index_to_dir
from allmydata.storage.immutable import ShareFile
from allmydata.storage.mutable import MutableShareFile
from allmydata.storage.http_client import StorageClientFactory
from allmydata.storage.http_server import HTTPServer, build_nurl
from allmydata.storage_client import _StorageServer, _HTTPStorageServer
from allmydata.util import base32

PLACEMENTS = ("f2h", "h2f", "local-foolscap", "local-gbs")

# How long setUp waits for swampgate to serve through a (re)started upstream.
READY_TIMEOUT = 30.0


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError("{} is not set (run by tests/it/istorageserver.rs)".format(name))
    return value


# ---------------------------------------------------------------------------
# The upstream Tahoe storage server of the bridges (in this process)


def make_upstream(directory, port, kind):
    """
    Write a new upstream identity (a Tub certificate, which is also the TLS
    certificate, as in a Tahoe node's ``private/node.pem``), a swissnum and the
    port to ``directory``; return the URL swampgate dials: the FURL for
    ``foolscap``, the NURL (built by Tahoe's ``build_nurl``) for ``http``.
    """
    os.makedirs(directory, exist_ok=True)
    tub = Tub()
    pem = tub.getCertData()
    with open(os.path.join(directory, "node.pem"), "wb") as f:
        f.write(pem)
    swissnum = base32.b2a(os.urandom(20)).decode("ascii")
    if kind == "foolscap":
        url = "pb://{}@tcp:127.0.0.1:{}/{}".format(tub.getTubID(), port, swissnum)
    elif kind == "http":
        from cryptography.x509 import load_pem_x509_certificate

        cert = load_pem_x509_certificate(pem)
        url = build_nurl("127.0.0.1", port, swissnum, cert).to_text()
    else:
        raise ValueError("upstream kind is foolscap or http, not {!r}".format(kind))
    with open(os.path.join(directory, "upstream.json"), "w") as f:
        json.dump(
            {"kind": kind, "port": port, "swissnum": swissnum, "tubid": tub.getTubID(), "url": url},
            f,
        )
    return url


class _Upstream(object):
    """One test's upstream: a fresh ``StorageServer`` on the fixed identity and port."""

    def __init__(self, directory, clock):
        with open(os.path.join(directory, "upstream.json")) as f:
            self.spec = json.load(f)
        self.pem_path = os.path.join(directory, "node.pem")
        self.storedir = tempfile.mkdtemp(prefix="swampgate-suite-upstream-")
        nodeid = base32.a2b(self.spec["tubid"].encode("ascii"))
        self.server = StorageServer(self.storedir, nodeid, clock=clock)
        self._tub = None
        self._port = None
        self._connections = None

    @inlineCallbacks
    def start(self):
        port = self.spec["port"]
        swissnum = self.spec["swissnum"]
        if self.spec["kind"] == "foolscap":
            with open(self.pem_path, "rb") as f:
                tub = Tub(certData=f.read())
            tub.listenOn("tcp:{}:interface=127.0.0.1".format(port))
            tub.setLocation("tcp:127.0.0.1:{}".format(port))
            tub.startService()
            tub.registerReference(FoolscapStorageServer(self.server), name=swissnum)
            self._tub = tub
        else:
            http = HTTPServer(reactor, self.server, swissnum.encode("ascii"))
            # TLS as a Tahoe node serves it (allmydata.protocol_switch), with the
            # Tub certificate; the connections are kept so that stop() can close
            # them.
            with open(self.pem_path, "rb") as f:
                certificate = PrivateCertificate.loadPEM(f.read())
            options = CertificateOptions(
                privateKey=certificate.privateKey.original,
                certificate=certificate.original,
            )
            # (Outside TLS: inside, it would hide the Site's ALPN protocols.)
            self._connections = WrappingFactory(
                TLSMemoryBIOFactory(options, False, Site(http.get_resource()))
            )
            endpoint = TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
            self._port = yield endpoint.listen(self._connections)

    @inlineCallbacks
    def stop(self):
        if self._tub is not None:
            yield self._tub.stopService()
        if self._port is not None:
            yield self._port.stopListening()
            for protocol in list(self._connections.protocols):
                protocol.transport.abortConnection()
            deadline = time.monotonic() + 10
            while self._connections.protocols and time.monotonic() < deadline:
                yield deferLater(reactor, 0.01, lambda: None)
        yield flushEventualQueue()
        shutil.rmtree(self.storedir, ignore_errors=True)


# ---------------------------------------------------------------------------
# The embedded store: leases read from swampgate's share files


class _StoreLeases(object):
    """
    The two lease readers of ``StorageServer`` the suite uses, over swampgate's
    store directory (Tahoe's layout: ``shares/<prefix>/<si>/<shnum>``), with
    Tahoe's own share-file classes, as ``StorageServer.get_leases`` and
    ``get_slot_leases`` do.
    """

    def __init__(self, storedir):
        self.sharedir = os.path.join(storedir, "shares")

    def _share_files(self, storage_index):
        bucket = os.path.join(self.sharedir, storage_index_to_dir(storage_index))
        try:
            names = os.listdir(bucket)
        except FileNotFoundError:
            return []
        return [os.path.join(bucket, n) for n in sorted(names, key=int) if n.isdigit()]

    def get_leases(self, storage_index):
        for path in self._share_files(storage_index):
            return ShareFile(path).get_leases()
        return iter([])

    def get_slot_leases(self, storage_index):
        for path in self._share_files(storage_index):
            return MutableShareFile(path).get_leases()
        return []


class _FileClock(object):
    """
    The suite's fake clock for swampgate's embedded store: swampgate runs with
    ``SWAMPGATE_TEST_CLOCK_FILE`` naming this file, and its store reads the time
    (whole seconds since the epoch) from it on every reading, so the suite drives
    it as it drives a ``StorageServer``'s ``Clock``.
    """

    def __init__(self, path):
        self.path = path

    def seconds(self):
        with open(self.path) as f:
            return int(f.read().strip())

    def advance(self, amount):
        assert int(amount) == amount, amount
        now = self.seconds() + int(amount)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("{}\n".format(now))
        os.replace(tmp, self.path)


# ---------------------------------------------------------------------------
# The adapter on the suite's _SharedMixin hooks


class _SwampgateMixin(suite._SharedMixin):
    """
    Sets up what the suite's ``_SharedMixin`` sets up on a Tahoe node --
    ``self.storage_client``, ``self.server``, ``self._clock`` (read by
    ``fake_time``/``fake_sleep``) -- on swampgate, for the placement in the
    environment. ``FOOLSCAP`` says which of Tahoe's clients to use.
    """

    FOOLSCAP: bool

    @inlineCallbacks
    def setUp(self):
        AsyncTestCase.setUp(self)
        self.placement = _env("SWAMPGATE_SUITE_PLACEMENT")
        assert self.placement in PLACEMENTS, self.placement
        expected_front = self.placement in ("f2h", "local-foolscap")
        assert self.FOOLSCAP == expected_front, (self.placement, self.FOOLSCAP)
        self.url = _env("SWAMPGATE_SUITE_URL")
        self._upstream = None
        self._client_tub = None
        self._pool = None
        # As the suite's tearDown ends: spin until the reactor is clean (an HTTP
        # connection whose error response was not read goes back to the pool, and
        # is closed, only later). Cleanups run last-added first: this is last.
        self.addCleanup(spin_until_cleanup_done)
        if self.placement.startswith("local-"):
            self._clock = _FileClock(_env("SWAMPGATE_SUITE_CLOCK"))
            self.server = _StoreLeases(_env("SWAMPGATE_SUITE_STORE"))
        else:
            # As the suite: the server's clock is a fake one.
            self._clock = Clock()
            self._clock.advance(123456)
            self._upstream = _Upstream(_env("SWAMPGATE_SUITE_UPSTREAM"), self._clock)
            self.server = self._upstream.server
            # Cleanups run even when setUp fails (tearDown does not), and last.
            self.addCleanup(self._upstream.stop)
            yield self._upstream.start()
        self.addCleanup(self._disconnect_client)
        self.storage_client = yield self._connect()
        yield self._wait_ready()

    @inlineCallbacks
    def _connect(self):
        if self.FOOLSCAP:
            # As a Tahoe client's Tub: remote exceptions arrive as RemoteException.
            tub = Tub()
            tub.setOption("expose-remote-exception-types", False)
            tub.startService()
            self._client_tub = tub
            rref = yield tub.getReference(self.url)
            return _StorageServer(get_rref=lambda: rref)
        # As the suite's HTTP placement (SystemTestMixin's test mode of
        # StorageClientFactory): no retries, short connection timeouts,
        # and responses checked not to be HTML.
        StorageClientFactory.start_test_mode(self._got_pool)
        self.addCleanup(StorageClientFactory.stop_test_mode)
        self._pool = HTTPConnectionPool(reactor)
        factory = StorageClientFactory({"tcp": "tcp"}, None)
        client = yield Deferred.fromCoroutine(
            factory.create_storage_client(DecodedURL.from_text(self.url), reactor, self._pool)
        )
        return _HTTPStorageServer.from_http_client(client)

    def _got_pool(self, pool):
        pool.cachedConnectionTimeout = 0.1
        pool.retryAutomatically = False

    @inlineCallbacks
    def _wait_ready(self):
        """
        Wait until swampgate answers ``get_version`` (which it asks its
        upstream): after the previous test's upstream went away, swampgate's
        upstream client reconnects, pacing its attempts.
        """
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                yield self.storage_client.get_version()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            yield deferLater(reactor, 0.1, lambda: None)

    def _get_istorage_server(self):
        return self.storage_client

    @inlineCallbacks
    def disconnect(self):
        """
        The suite's Foolscap ``disconnect()``: drop the connection to swampgate
        and connect again with a new ``IStorageServer``.
        """
        current = self.storage_client
        yield self._client_tub.stopService()
        yield flushEventualQueue()
        self.storage_client = yield self._connect()
        assert self.storage_client is not current

    @inlineCallbacks
    def _disconnect_client(self):
        if self._client_tub is not None:
            yield self._client_tub.stopService()
        if self._pool is not None:
            # The suite's tearDown stops the client node's services first, which
            # takes a few reactor turns: responses still being read (an error
            # response whose body Tahoe's client does not read) end meanwhile and
            # their connections become idle. Then it closes the idle ones.
            for _ in range(3):
                yield deferLater(reactor, 0.02, lambda: None)
                yield self._pool.closeCachedConnections()
        yield flushEventualQueue()

    def tearDown(self):
        AsyncTestCase.tearDown(self)


class _FoolscapFront(_SwampgateMixin):
    FOOLSCAP = True


class _GbsFront(_SwampgateMixin):
    FOOLSCAP = False


# The suite's test classes (as the suite defines them) for the placement in the
# environment: the Foolscap ones for swampgate's Foolscap front, the HTTP ones for
# its GBS front.
_PLACEMENT = os.environ.get("SWAMPGATE_SUITE_PLACEMENT")

if _PLACEMENT in ("f2h", "local-foolscap"):

    class FoolscapSharedAPIsTests(
        _FoolscapFront, suite.IStorageServerSharedAPIsTestsMixin, AsyncTestCase
    ):
        pass

    class FoolscapImmutableAPIsTests(
        _FoolscapFront, suite.IStorageServerImmutableAPIsTestsMixin, AsyncTestCase
    ):
        # The suite's Foolscap-only test, with the disconnect() above.
        test_disconnection = suite.FoolscapImmutableAPIsTests.test_disconnection

    class FoolscapMutableAPIsTests(
        _FoolscapFront, suite.IStorageServerMutableAPIsTestsMixin, AsyncTestCase
    ):
        pass

elif _PLACEMENT in ("h2f", "local-gbs"):

    class HTTPSharedAPIsTests(
        _GbsFront, suite.IStorageServerSharedAPIsTestsMixin, AsyncTestCase
    ):
        pass

    class HTTPImmutableAPIsTests(
        _GbsFront, suite.IStorageServerImmutableAPIsTestsMixin, AsyncTestCase
    ):
        pass

    class HTTPMutableAPIsTests(
        _GbsFront, suite.IStorageServerMutableAPIsTestsMixin, AsyncTestCase
    ):
        pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["make-upstream"] and len(sys.argv) == 5:
        print(make_upstream(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    else:
        sys.exit("usage: istorageserver_suite.py make-upstream DIR PORT foolscap|http")
