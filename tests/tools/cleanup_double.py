"""A test double of tern-cleanup's submission side (IPC_CLEANUP_* in
src/lib/ipc.h), for testing the sendmail command and tern-pickup on
their own: every reply can be chosen. The real tern-cleanup serving the
public socket under ternd is tested at the end of test_sendmail.py.

It listens on Unix sockets (the private cleanup socket and the public
sendmail socket), speaks the framing and HELLO of ipc.h, answers BEGIN,
RCPT and END with CLEANUP_REPLY, and records each committed message with
the peer's SO_PEERCRED. On the public socket it does what the real
cleanup must do: the identity comes from the kernel, not from the client.

Use from pytest (CleanupDouble(...).start()) or run it:
    python3 cleanup_double.py --socket PATH [--socket PATH] --out DIR
"""
import argparse
import json
import os
import re
import socket
import struct
import threading

from ipcdefs import IPC_VERSION
HELLO = 0x0001
BEGIN, RCPT, DATA, END, ABORT, REPLY = 0x0101, 0x0102, 0x0103, 0x0104, 0x0105, 0x0106
MAX_PAYLOAD = 1024 * 1024


class Reader:
    """Field decoder with the checks of ipc_get_*."""

    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError("field runs past the payload")
        v = self.d[self.p:self.p + n]
        self.p += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def bool(self):
        v = self.u8()
        if v > 1:
            raise ValueError("bad bool")
        return v == 1

    def str(self):
        n = self.u32()
        b = self.take(n)
        if n == 0 or b[-1] != 0 or 0 in b[:-1]:
            raise ValueError("bad str")
        return b[:-1].decode("utf-8", "surrogateescape")

    def data(self):
        return self.take(self.u32())

    def end(self):
        if self.p != len(self.d):
            raise ValueError("bytes left over")


def put_str(s):
    b = s.encode("utf-8", "surrogateescape") + b"\0"
    return struct.pack(">I", len(b)) + b


def frame(ftype, reqid, payload):
    return struct.pack(">IHHI", len(payload), ftype, 0, reqid) + payload


class CleanupDouble:
    """rcpt_reply(address) / end_reply(txn) return "CODE X.Y.Z text" to
    refuse, None to accept; end_reply may return "DROP" to close the
    connection without a reply (cleanup dying before its commit)."""

    def __init__(self, sockets, out_dir, rcpt_reply=None, end_reply=None,
                 begin_reply=None):
        self.sockets = sockets
        self.out_dir = out_dir
        self.rcpt_reply = rcpt_reply
        self.end_reply = end_reply
        self.begin_reply = begin_reply
        self.messages = []
        self.lock = threading.Lock()
        self.listeners = []
        self.stopping = False
        self.errors = []
        self.counter = 0
        os.makedirs(out_dir, exist_ok=True)

    def start(self):
        for path in self.sockets:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            os.chmod(path, 0o666)
            s.listen(16)
            self.listeners.append(s)
            threading.Thread(target=self._accept, args=(s, path),
                             daemon=True).start()
        return self

    def stop(self):
        self.stopping = True
        for s in self.listeners:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for path in self.sockets:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _accept(self, s, path):
        while not self.stopping:
            try:
                c, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c, path),
                             daemon=True).start()

    def _recv_exact(self, c, n):
        b = b""
        while len(b) < n:
            chunk = c.recv(n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b

    def _serve(self, c, path):
        cred = c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                            struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", cred)
        public = os.path.basename(path) == "sendmail"
        txns = {}
        try:
            c.sendall(frame(HELLO, 0, struct.pack(">I", IPC_VERSION) +
                            put_str("cleanup")))
            hdr = self._recv_exact(c, 12)
            length, ftype, flags, reqid = struct.unpack(">IHHI", hdr)
            r = Reader(self._recv_exact(c, length))
            if ftype != HELLO or r.u32() != IPC_VERSION:
                raise ValueError("bad HELLO")
            r.str()
            r.end()
            while True:
                hdr = self._recv_exact(c, 12)
                length, ftype, flags, reqid = struct.unpack(">IHHI", hdr)
                # IPC_F_FD: tern-pickup's proof (peer_proof.h); plain
                # recv() lets the kernel close the descriptor.
                if length > MAX_PAYLOAD or flags & ~0x0001:
                    raise ValueError("bad header")
                r = Reader(self._recv_exact(c, length) if length else b"")
                self._handle(c, ftype, reqid, r, txns, public, pid, uid, gid)
        except EOFError:
            pass
        except Exception as e:  # a protocol error fails the test
            self.errors.append(repr(e))
        finally:
            c.close()

    def _reply(self, c, reqid, text, qid=""):
        code, status, msg = text.split(" ", 2)
        c.sendall(frame(REPLY, reqid, struct.pack(">H", int(code)) +
                        put_str(status) + put_str(msg) + put_str(qid)))

    def _handle(self, c, ftype, reqid, r, txns, public, pid, uid, gid):
        if ftype == BEGIN:
            t = {"source": r.u8(), "listener": r.str(), "client_name": r.str(),
                 "client_addr": r.str(), "helo": r.str(),
                 "auth_user": r.str(), "trusted": r.bool(), "tls": r.str(),
                 "sender": r.str(), "body": r.u8(), "smtputf8": r.bool(),
                 "size": r.u64(), "ret": r.u8(), "envid": r.str(),
                 "rcpts": [], "notify": [], "content": b"",
                 "peer_uid": uid, "peer_pid": pid, "peer_gid": gid,
                 "socket": "public" if public else "private"}
            r.end()
            if public:
                # What the real cleanup must impose on the public socket.
                t["claimed_auth_user"] = t["auth_user"]
                t["auth_user"] = f"uid={uid}"
                t["source"] = 3
            txns[reqid] = t
            refusal = self.begin_reply(t) if self.begin_reply else None
            if refusal:
                del txns[reqid]
            self._reply(c, reqid, refusal or "250 2.1.0 Ok")
        elif ftype == RCPT:
            addr, orcpt, notify = r.str(), r.str(), r.u8()
            r.end()
            t = txns[reqid]
            refusal = self.rcpt_reply(addr) if self.rcpt_reply else None
            if not refusal:
                t["rcpts"].append(addr)
                t["notify"].append(notify)
            self._reply(c, reqid, refusal or "250 2.1.5 Ok")
        elif ftype == DATA:
            chunk = r.data()
            r.end()
            if len(chunk) > 64 * 1024:
                raise ValueError("DATA chunk larger than IPC_DATA_CHUNK")
            txns[reqid]["content"] += chunk
        elif ftype == END:
            r.end()
            t = txns.pop(reqid)
            refusal = self.end_reply(t) if self.end_reply else None
            if refusal == "DROP":
                # A crash before the commit: the connection just ends.
                raise EOFError
            if refusal:
                self._reply(c, reqid, refusal)
                return
            with self.lock:
                self.counter += 1
                qid = "%016X" % (0xABC0000 + self.counter)
                rec = dict(t)
                rec["qid"] = qid
                rec["content"] = t["content"].decode("latin-1")
                self.messages.append(rec)
                with open(os.path.join(self.out_dir, qid + ".json"), "w") as f:
                    json.dump(rec, f)
            self._reply(c, reqid, "250 2.0.0 Ok: queued as " + qid, qid)
        elif ftype == ABORT:
            r.end()
            txns.pop(reqid, None)
        else:
            raise ValueError("unexpected type 0x%04x" % ftype)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--refuse-rcpt", help="regex of recipients refused with 550 5.1.1")
    a = ap.parse_args()
    rx = re.compile(a.refuse_rcpt) if a.refuse_rcpt else None
    d = CleanupDouble(a.socket, a.out, rcpt_reply=(
        lambda addr: "550 5.1.1 refused by the test double"
        if rx and rx.search(addr) else None))
    d.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
