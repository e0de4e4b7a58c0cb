#!/usr/bin/python3
"""fake_signer.py - a test double of tern-signer for tern-cleanup's tests,
started by ternd in its place (daemon_dir/tern-signer links here). It
serves the socket ternd passes (TERN_FDS "unix:signer=N") and speaks the
IPC_SIGN_* conversation of src/lib/ipc.h. It signs with dkimpy, so a
test can verify what tern-cleanup queued with an independent verifier.

Environment:
  FAKE_SIGNER_KEY       PEM private key (RSA) used for every domain
  FAKE_SIGNER_SELECTOR  the selector (default "s1")
  FAKE_SIGNER_MODE      ok | nokey | tempfail | close (default ok);
                        read again for every job from FAKE_SIGNER_MODE_FILE
                        when that file exists
  FAKE_SIGNER_LOG       a file the double appends "DOMAIN BYTES" lines to
"""
import os
import select
import signal
import socket
import struct
import sys

from ipcdefs import IPC_VERSION

HELLO, BEGIN, DATA, END, ABORT, REPLY = 0x0001, 0x0201, 0x0202, 0x0203, \
    0x0204, 0x0205


def frame(ftype, reqid, payload=b""):
    return struct.pack(">IHHI", len(payload), ftype, 0, reqid) + payload


def put_str(s):
    b = s.encode() + b"\0"
    return struct.pack(">I", len(b)) + b


def get_str(buf, pos):
    (n,) = struct.unpack_from(">I", buf, pos)
    return buf[pos + 4:pos + 4 + n - 1].decode(), pos + 4 + n


def mode():
    f = os.environ.get("FAKE_SIGNER_MODE_FILE")
    if f and os.path.exists(f):
        with open(f) as fh:
            return fh.read().strip()
    return os.environ.get("FAKE_SIGNER_MODE", "ok")


def sign(domain, message):
    import dkim
    with open(os.environ["FAKE_SIGNER_KEY"], "rb") as f:
        key = f.read()
    sel = os.environ.get("FAKE_SIGNER_SELECTOR", "s1").encode()
    sig = dkim.sign(message, sel, domain.encode(), key,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=[b"from", b"to", b"subject", b"date",
                                     b"message-id"])
    return sig.decode().rstrip("\r\n")


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.jobs = {}
        sock.sendall(frame(HELLO, 0, struct.pack(">I", IPC_VERSION) +
                           put_str("signer")))

    def handle(self, ftype, reqid, p):
        if ftype == HELLO:
            return True
        if ftype == BEGIN:
            domain, _ = get_str(p, 0)
            self.jobs[reqid] = [domain, b""]
        elif ftype == DATA:
            (n,) = struct.unpack_from(">I", p, 0)
            self.jobs[reqid][1] += p[4:4 + n]
        elif ftype == ABORT:
            self.jobs.pop(reqid, None)
        elif ftype == END:
            domain, msg = self.jobs.pop(reqid)
            log = os.environ.get("FAKE_SIGNER_LOG")
            if log:
                with open(log, "a") as f:
                    f.write("%s %d\n" % (domain, len(msg)))
            m = mode()
            if m == "close":
                return False
            if m == "ok":
                out = struct.pack(">B", 0) + put_str("") + \
                    struct.pack(">I", 1) + put_str(sign(domain, msg))
            elif m == "nokey":
                out = struct.pack(">B", 1) + put_str(
                    "no key for %s" % domain) + struct.pack(">I", 0)
            else:
                out = struct.pack(">B", 2) + put_str("fake failure") + \
                    struct.pack(">I", 0)
            self.sock.sendall(frame(REPLY, reqid, out))
        return True

    def readable(self):
        data = self.sock.recv(1 << 20)
        if not data:
            return False
        self.buf += data
        while len(self.buf) >= 12:
            n, ftype, _flags, reqid = struct.unpack_from(">IHHI", self.buf, 0)
            if len(self.buf) < 12 + n:
                break
            p = self.buf[12:12 + n]
            self.buf = self.buf[12 + n:]
            if not self.handle(ftype, reqid, p):
                return False
        return True


def main():
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    fds = dict(item.rsplit("=", 1) for item in
               os.environ.get("TERN_FDS", "").split())
    lsock = socket.socket(fileno=int(fds["unix:signer"]))
    lsock.setblocking(True)
    conns = {}
    while True:
        r, _, _ = select.select([lsock] + list(conns), [], [])
        for s in r:
            if s is lsock:
                c, _ = lsock.accept()
                conns[c] = Conn(c)
            elif not conns[s].readable():
                s.close()
                del conns[s]


if __name__ == "__main__":
    main()
