"""Create (optionally), configure and run one Tahoe-LAFS node on loopback.

Runs on each release the tests use as a peer: 1.20 and 1.18 (Python 3) and 1.17
(Python 2.7), so it sticks to what both Pythons have.

usage: python tahoe_node.py SPEC.json

SPEC is a JSON object (written by the Rust harness, tests/it/kit/tahoe.rs):

    {
      "nodedir": "/abs/path/of/the/node",
      "create": ["create-node", "--port=tcp:1234:interface=127.0.0.1", ...],
      "config": [["storage", "reserved_space", "0"], ...],
      "private_files": {"servers.yaml": "..."},
      "allow_stdin_close": true
    }

1. "create", if NODEDIR has no tahoe.cfg yet: the arguments of a `tahoe` create
   command (`create-node`, `create-client` or `create-introducer`), without
   NODEDIR. They are parsed and dispatched by Tahoe's own runner, exactly as
   `tahoe ARGS... NODEDIR` would, but in this process: that saves a Python start
   and exit (seconds) per node. With a tahoe.cfg present this step is skipped, so
   the same SPEC restarts an existing node.
2. "config": `[section] key = value` settings, written into tahoe.cfg with
   Tahoe's own `allmydata.util.configutil` (every time; they are idempotent).
3. "private_files": files written into NODEDIR/private/ (every time).
4. Then `tahoe run --allow-stdin-close NODEDIR` (without the option if
   "allow_stdin_close" is false: 1.18 does not have it), with one change: besides
   the ports its configuration names, a node (1.18 and 1.20) always starts a "log Tub" (for
   `flogtool tail`) through `allmydata.util.iputil.listenOnUnused`, which binds
   ('', 0), i.e. every interface, with no configuration to change that. We replace
   that function with one that binds 127.0.0.1 instead.
"""
import io
import json
import os
import socket
import sys

from twisted.python.filepath import FilePath

from allmydata.scripts import create_node, runner
from allmydata.util import configutil, iputil


def create(args, nodedir):
    """Run `tahoe ARGS... NODEDIR` (a create command) in this process."""
    config = runner.parse_or_exit(
        runner.Options(), ["tahoe"] + list(args) + [nodedir], sys.stdout, sys.stderr
    )
    options = config.subOptions
    options.stdout, options.stderr = sys.stdout, sys.stderr
    if config.subCommand not in create_node.dispatch:
        sys.exit("not a create command: %r" % (config.subCommand,))
    results = []
    create_node.dispatch[config.subCommand](options).addBoth(results.append)
    # Without Tor/I2P/--join nothing in a create command waits for the network,
    # so its Deferred has fired already.
    if not results:
        sys.exit("tahoe %s did not finish synchronously" % (config.subCommand,))
    if results[0] != 0:
        sys.exit("tahoe %s failed: %r" % (config.subCommand, results[0]))
    sys.stdout.flush()


PY2 = sys.version_info[0] == 2


def native(text):
    """`text` (unicode from JSON) as the native `str`: bytes on Python 2."""
    return text.encode("utf-8") if PY2 else text


def configure(nodedir, settings):
    path = FilePath(os.path.join(nodedir, "tahoe.cfg"))
    config = configutil.get_config(path.path)
    for section, key, value in settings:
        configutil.set_config(config, section, key, value)
    configutil.write_config(path, config)


def _listen_on_unused_loopback(tub, portnum=None):
    """iputil.listenOnUnused, but on 127.0.0.1 only.

    The socket is bound and listening before Twisted adopts it, so no other
    process can take the port in between.
    """
    from twisted.internet import reactor
    from twisted.internet.endpoints import AdoptedStreamServerEndpoint

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", portnum or 0))
    sock.listen(50)
    port = sock.getsockname()[1]
    # The endpoint owns a duplicate of the descriptor (socket.detach is Python 3
    # only): Twisted adopts a copy of it when the Tub starts listening, then
    # closes it.
    fd = os.dup(sock.fileno())
    sock.close()
    tub.listenOn(AdoptedStreamServerEndpoint(reactor, fd, socket.AF_INET))
    tub.setLocation("127.0.0.1:%d" % port)
    return port


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: %s SPEC.json" % argv[0])
    with io.open(argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    nodedir = spec["nodedir"]
    if not os.path.exists(os.path.join(nodedir, "tahoe.cfg")):
        create(spec["create"], nodedir)
    configure(native(nodedir), [[native(x) for x in s] for s in spec.get("config", [])])
    for name, text in spec.get("private_files", {}).items():
        with io.open(os.path.join(nodedir, "private", name), "w", encoding="utf-8") as f:
            f.write(text)

    iputil.listenOnUnused = _listen_on_unused_loopback
    # Never returns: raises SystemExit when the node stops.
    run = ["tahoe", "run"]
    if spec.get("allow_stdin_close", True):
        run.append("--allow-stdin-close")
    runner.run(argv=run + [native(nodedir)])


if __name__ == "__main__":
    main(sys.argv)
