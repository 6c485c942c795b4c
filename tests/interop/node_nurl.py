"""Print the NURLs a Tahoe-LAFS 1.20 storage node announces, one per line.

usage: python node_nurl.py NODEDIR

Tahoe does not write its NURLs to a file. When storage is enabled and
`[storage] force_foolscap` is false, `allmydata.client._Client.init_storage`
gets them from `allmydata.protocol_switch._FoolscapOrHttps.add_storage_server`,
which, for every `tcp:HOST:PORT` hint in the Tub's location, calls
`allmydata.storage.http_server.build_nurl(HOST, PORT, SWISSNUM, CERT)` with
the storage FURL's swissnum and the Tub's certificate (`private/node.pem`).
This script makes the same calls with the same inputs read from NODEDIR:
the location hints and swissnum from `private/storage.furl` (the FURL carries
exactly the Tub's location hints) and the certificate from `private/node.pem`.
(Tor hints give `pb+tor://` NURLs in Tahoe; the harness only uses TCP.)
"""
import sys
from pathlib import Path

from cryptography.x509 import load_pem_x509_certificate
from foolscap.furl import decode_furl

from allmydata.storage.http_server import build_nurl


def node_nurls(nodedir):
    private = Path(nodedir) / "private"
    furl = (private / "storage.furl").read_text().strip()
    certificate = load_pem_x509_certificate((private / "node.pem").read_bytes())
    _tubid, location_hints, swissnum = decode_furl(furl)
    nurls = []
    for hints in location_hints:
        for hint in hints.split(","):
            if hint.startswith("tcp:"):
                _scheme, hostname, port = hint.split(":")
                nurls.append(build_nurl(hostname, int(port), swissnum, certificate).to_text())
    return nurls


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: %s NODEDIR" % argv[0])
    nurls = node_nurls(argv[1])
    if not nurls:
        sys.exit("no tcp: location hints in %s/private/storage.furl" % argv[1])
    for nurl in nurls:
        print(nurl)


if __name__ == "__main__":
    main(sys.argv)
