"""A GBS client that asks for an immutable share and stops reading its answer.

Usage:
  python stalled_reader.py HOST:PORT SWISSNUM STORAGE_INDEX SHNUM LENGTH STALL_SECS

Connects with a small receive buffer (so the server's writes back up at once),
sends `GET /storage/v1/immutable/SI/SHNUM` for bytes 0..LENGTH, reads the status
line and headers, then reads nothing for STALL_SECS, then reads until the server
closes the connection (or 60 s pass). Prints one JSON line:
  {"status": N, "body_bytes": BYTES_OF_BODY_RECEIVED,
   "ended": "closed" | "reset" | "timeout" | "tls-error", "detail": "..."}

TLS: swampgate's self-signed certificate on loopback is not checked (the Rust
tests pin it elsewhere).
"""

import base64
import json
import socket
import ssl
import sys
import time


def main():
    hostport, swissnum, si, shnum, length, stall = sys.argv[1:7]
    host, port = hostport.rsplit(":", 1)
    length, stall = int(length), float(stall)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Set before connect, so the advertised window stays small.
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(30)
    raw.connect((host, int(port)))
    s = ctx.wrap_socket(raw)
    auth = "Tahoe-LAFS " + base64.b64encode(swissnum.encode("ascii")).decode("ascii")
    s.sendall(
        (
            "GET /storage/v1/immutable/%s/%s HTTP/1.1\r\n"
            "Host: %s\r\n"
            "Authorization: %s\r\n"
            "Range: bytes=0-%d\r\n"
            "Connection: close\r\n\r\n" % (si, shnum, hostport, auth, length - 1)
        ).encode("ascii")
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1024)
        if not chunk:
            break
        head += chunk
    head, _, body = head.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    received = len(body)
    time.sleep(stall)
    s.settimeout(60)
    ended, detail = "closed", ""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            received += len(chunk)
    except socket.timeout as e:
        ended, detail = "timeout", repr(e)
    except ssl.SSLError as e:
        ended, detail = "tls-error", repr(e)
    except (ConnectionResetError, BrokenPipeError) as e:
        ended, detail = "reset", repr(e)
    print(
        json.dumps(
            {"status": status, "body_bytes": received, "ended": ended, "detail": detail}
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
