"""Print the CBOR test vectors for `src/gbs/codec/`, as Tahoe-LAFS 1.20 encodes them.

Tahoe encodes every GBS message with ``cbor2.dumps`` (``allmydata.util.cbor``); this
script encodes the same Python values the same way and prints one ``name hex`` line
per message. Run with the interop venv's Python and redirect into
``src/gbs/testdata/cbor_vectors.txt``.
"""

from allmydata.util.cbor import dumps

V1 = b"http://allmydata.org/tahoe/protocols/storage/v1"

VECTORS = [
    # Responses, as the server writes them (``HTTPServer._send_encoded``).
    (
        "version",
        {
            V1: {
                b"maximum-immutable-share-size": 84598329344,
                b"maximum-mutable-share-size": 69105000000000000,
                b"available-space": 84598329344,
            },
            b"application-version": b"tahoe-lafs/1.20.0",
        },
    ),
    (
        "version_small",
        {
            V1: {
                b"maximum-immutable-share-size": 0,
                b"maximum-mutable-share-size": 23,
                b"available-space": 2**64 - 1,
            },
            b"application-version": b"",
        },
    ),
    # Python iterates small-int sets in ascending order when the ints are below the
    # hash table size, so these sets come out sorted, as swampgate writes them; other
    # sets (e.g. {2, 3, 200} -> 200, 2, 3) differ in item order only.
    ("allocate_response", {"already-have": {1}, "allocated": {2, 3, 7}}),
    ("allocate_response_empty", {"already-have": set(), "allocated": set()}),
    ("share_set", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}),
    ("share_set_empty", set()),
    ("write_progress", {"required": [{"begin": 16, "end": 48}, {"begin": 100, "end": 70000}]}),
    ("write_complete", {"required": []}),
    (
        "rtw_response",
        {"success": True, "data": {0: [b"012", b"89"], 1: [b"abc", b""]}},
    ),
    ("rtw_response_empty", {"success": False, "data": {}}),
    # Requests, as the client writes them (``StorageClient.request``).
    ("allocate_request", {"share-numbers": {1, 2, 3}, "allocated-size": 48}),
    ("corrupt_request", {"reason": "bad hash"}),
    (
        "rtw_request",
        {
            "test-write-vectors": {
                0: {
                    "test": [{"offset": 0, "size": 1, "specimen": b""}],
                    "write": [{"offset": 0, "data": b"0123456789"}],
                    "new-length": None,
                },
                3: {"test": [], "write": [], "new-length": 0},
            },
            "read-vector": [{"offset": 0, "size": 3}, {"offset": 8, "size": 1000}],
        },
    ),
]

for name, value in VECTORS:
    print(name, dumps(value).hex())
