"""What the test doubles share with the daemons' IPC (src/lib/ipc.h):
the protocol version and the cleanup sources, read from the header so
that a double speaks the version the daemons speak and a bump cannot be
forgotten here."""
import os
import re

_IPC_H = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "..", "..", "src", "lib", "ipc.h")

with open(_IPC_H) as _f:
    _TEXT = _f.read()
IPC_VERSION = int(re.search(r"^#define IPC_VERSION\s+(\d+)", _TEXT,
                            re.M).group(1))
# enum cleanup_source: {"SUBMISSION": 1, "INBOUND": 2, ...}
CLEANUP_SOURCE = {name: int(value) for name, value in re.findall(
    r"^\s*CLEANUP_SOURCE_(\w+)\s*=\s*(\d+)", _TEXT, re.M)}
