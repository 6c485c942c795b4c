"""Run a Tahoe-LAFS node in the foreground, with every listening socket on loopback.

usage: python tahoe_run.py NODEDIR

This is `tahoe run --allow-stdin-close NODEDIR`, with one change. Besides the
ports its configuration names, a Tahoe-LAFS 1.20 node always starts a
"log Tub" (the target of `flogtool tail`), and `allmydata.node.Node.create_log_tub`
makes it listen through `allmydata.util.iputil.listenOnUnused`, which binds
('', 0): every interface, a random port. There is no configuration for it.
We replace that function (before the node module runs it) with one that binds
127.0.0.1:0 instead. The rest is Tahoe's own `tahoe run`.
"""
import socket
import sys

from allmydata.util import iputil


def _listen_on_unused_loopback(tub, portnum=None):
    """Like iputil.listenOnUnused, but on 127.0.0.1 only.

    The socket is bound here and handed to Twisted already listening, so
    there is no window in which another process could take the port.
    """
    from twisted.internet import reactor
    from twisted.internet.endpoints import AdoptedStreamServerEndpoint

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", portnum or 0))
    sock.listen(50)
    port = sock.getsockname()[1]
    # The endpoint owns the descriptor from here on: Twisted adopts a copy
    # when the Tub starts listening and then closes this one.
    endpoint = AdoptedStreamServerEndpoint(reactor, sock.detach(), socket.AF_INET)
    tub.listenOn(endpoint)
    tub.setLocation("127.0.0.1:%d" % port)
    return port


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: %s NODEDIR" % argv[0])
    iputil.listenOnUnused = _listen_on_unused_loopback
    from allmydata.scripts.runner import run

    # Never returns: raises SystemExit when the node stops.
    run(argv=["tahoe", "run", "--allow-stdin-close", argv[1]])


if __name__ == "__main__":
    main(sys.argv)
