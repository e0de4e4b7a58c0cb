"""What the test doubles share with the daemons' IPC (src/lib/ipc.h):
the protocol version, read from the header so that a double speaks the
version the daemons speak and a bump cannot be forgotten here."""
import os
import re

_IPC_H = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "..", "..", "src", "lib", "ipc.h")

with open(_IPC_H) as _f:
    IPC_VERSION = int(re.search(r"^#define IPC_VERSION\s+(\d+)", _f.read(),
                                re.M).group(1))
