"""tern-qmgr when the queue fills up while deliveries are in flight, every
daemon real: messages are claimed and held at an aiosmtpd sink (the
delivery is in flight), the LMDB map is then filled to [queue]
map_size_max by another writer (or the queue's small tmpfs is filled up
by a file, and the map's free pages by that writer), and the sink lets
the deliveries end.
Their results cannot be committed (queue map full): tern-qmgr must keep
them, not exit and restart in a loop, and commit them once the space is
freed; every message reaches the sink (a duplicate is allowed, a loss is
not) and the queue ends empty."""
import errno
import os
import re
import smtplib
import struct
import subprocess
import threading
import time

import lmdb
import pytest

import ternlib
from ternlib import Dns, free_port_on, wait_for

DEST_HOST = "127.0.0.3"
MB = 1024 * 1024
N_MSGS = 4
# [queue] map_size and map_size_max; on the 4 MB tmpfs the map is larger
# than the disk, so the disk fills up first.
MAP = {"map full": 4 * MB, "disk full": 16 * MB}
ERROR = {"map full": "queue map full at map_size_max",
         "disk full": "no space left on the queue's disk"}


def pipeline(tern, sinks, test_dir, data_reply, kind, queue_dir):
    port = free_port_on([DEST_HOST])
    dest = sinks(host=DEST_HOST, port=port, data_reply=data_reply)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{DEST_HOST}"], test_dir)
    t = tern({
        "delivery": {"dns_servers": dns.server, "smtp_port": str(port),
                     "tls": "none", "retry_schedule": "1s"},
        "domain example.test": {},
        "queue": {"map_size": str(MAP[kind]), "map_size_max": str(MAP[kind])},
        **({"server": {"queue_dir": queue_dir}} if queue_dir else {}),
    })
    if queue_dir:
        t.queue_dir = queue_dir
    sub = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    t.start()
    return t, sub, dest, dns


def submit(port, i):
    msg = (f"From: <app@example.test>\r\nTo: <r{i}@dest.test>\r\n"
           f"Subject: full {i}\r\nX-Marker: m{i}\r\n\r\nbody {i}\r\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("app@example.test", [f"r{i}@dest.test"], msg.encode())


def softfail_record(n):
    """A well-formed softfail record (queue/SCHEMA.md) of n recent
    failures: ballast the queue itself would accept."""
    now_ms = int(time.time() * 1000)
    return struct.pack(">BH", 1, n) + b"".join(
        struct.pack(">qQ", now_ms - n + i, 0x1000 + i) for i in range(n))


def open_env(t, kind):
    return lmdb.open(t.queue_dir, map_size=MAP[kind], max_dbs=20,
                     subdir=True, lock=True, sync=False)


def fill_disk(path):
    """Writes path until the file system has no room left."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (64 * 1024, 4096):
            while True:
                try:
                    f.write(b"\0" * chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break


def fill_map(t, kind):
    """Writes ballast, one entry per transaction, smaller and smaller,
    until the map has no room even for the smallest: the queue is at
    map_size_max. Returns the ballast keys."""
    keys = []
    env = open_env(t, kind)
    try:
        db = env.open_db(b"softfail", create=False)
        for n in (999, 250, 30, 4, 1):
            value = softfail_record(n)
            failed = 0
            while failed < 3:
                key = b"ballast%06d@else.test" % len(keys)
                try:
                    with env.begin(write=True, db=db) as txn:
                        txn.put(key, value)
                    keys.append(key)
                except lmdb.Error:	# map full, or no space (disk full)
                    failed += 1
    finally:
        env.close()
    return keys


def free_map(t, kind, keys):
    """Deletes the ballast, as an operator freeing space would: one key
    per transaction (a transaction that touches many pages may not fit
    in a full map, however much it frees)."""
    env = open_env(t, kind)
    try:
        db = env.open_db(b"softfail", create=False)
        deadline = time.time() + 30
        for k in reversed(keys):
            while True:
                try:
                    with env.begin(write=True, db=db) as txn:
                        txn.delete(k)
                    break
                except lmdb.MapFullError:
                    assert time.time() < deadline, "cannot free any space"
                    time.sleep(0.05)
    finally:
        env.close()


def queued_messages(t):
    env = lmdb.open(t.queue_dir, readonly=True, max_dbs=20, subdir=True,
                    lock=True)
    try:
        with env.begin() as txn:
            db = env.open_db(b"messages", txn=txn, create=False)
            return txn.stat(db)["entries"]
    finally:
        env.close()




class Held:
    """A tern whose N_MSGS messages were delivered to the sink while the
    map was full: their results are held by tern-qmgr."""

    def __init__(self, tern, sinks, test_dir, kind="map full", fs=None):
        self.held = threading.Event()
        self.release = threading.Event()
        self.keys = []
        self.kind = kind
        self.ballast = os.path.join(fs, "ballast") if fs else None
        self.full = re.compile(r"tern/qmgr\[\d+\]: warning: queue full \(" +
                               re.escape(ERROR[kind]) + r"\): \d+ "
                               r"change\(s\) not committed")

        def data_reply(envelope):
            # The first delivery stays in flight until the map is full
            # (this blocks the sink: the others wait behind it).
            self.held.set()
            self.release.wait(60)
            return None

        self.t, self.sub, self.dest, self.dns = pipeline(
            tern, sinks, test_dir, data_reply, kind,
            os.path.join(fs, "queue") if fs else None)

    def fill_while_in_flight(self):
        t = self.t
        for i in range(N_MSGS):
            submit(self.sub, i)
        # Every message claimed (ACTIVE in the store): from now on the
        # only writes of tern-qmgr are the results.
        t.wait_log(r"\(queue active\)", timeout=20, count=N_MSGS)
        wait_for(self.held.is_set, 20, what="a delivery in flight at the sink")
        self.pid = t.pids_of("qmgr")
        assert len(self.pid) == 1, self.pid
        if self.ballast:
            fill_disk(self.ballast)
        self.keys = fill_map(t, self.kind)
        assert self.keys
        self.release.set()
        wait_for(lambda: self.full.search(t.log_text()) or
                 t.pids_of("qmgr") != self.pid, 30,
                 what="tern-qmgr to hold the results (or to exit)")
        assert t.pids_of("qmgr") == self.pid, "tern-qmgr restarted"
        self.dest.wait_messages(N_MSGS, timeout=30)

    def free(self):
        if self.ballast and os.path.exists(self.ballast):
            os.unlink(self.ballast)
        if self.keys:
            free_map(self.t, self.kind, self.keys)
        self.keys = []

    def close(self):
        self.release.set()
        self.free()
        self.dns.stop()

    def markers(self):
        return [re.search(rb"X-Marker: (m\d+)", m["data"]).group(1)
                for m in self.dest.messages]


@pytest.fixture
def small_tmpfs(test_dir):
    d = os.path.join(test_dir, "smallfs")
    os.makedirs(d)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs",
                    d], check=True)
    q = os.path.join(d, "queue")
    os.makedirs(q)
    if ternlib.IS_ROOT:
        subprocess.run(["chown", "tern:", q], check=True)
    yield d
    subprocess.run(["umount", "-l", d], check=False)


@pytest.mark.parametrize("kind", ["map full", "disk full"])
def test_results_held_while_the_queue_is_full(tern, sinks, test_dir, kind,
                                              request):
    fs = request.getfixturevalue("small_tmpfs") if kind == "disk full" \
        else None
    h = Held(tern, sinks, test_dir, kind, fs)
    t = h.t
    FULL = h.full
    try:
        h.fill_while_in_flight()
        # Full for a while: retries (1 s, 2 s, 4 s ...) fail, tern-qmgr
        # stays, says so once, and sends nothing again.
        time.sleep(8)
        log = t.log_text()
        assert t.pids_of("qmgr") == h.pid, "tern-qmgr restarted"
        assert len(FULL.findall(log)) == 1, log[-4000:]
        # libternq's own warning too: once, not per try.
        lib = (r"map full at map_size_max" if kind == "map full" else
               r"commit: (No space left on device|Input/output error)")
        assert len(re.findall(r"tern/qmgr\[\d+\]: warning: queue [^ ]*: " +
                              lib, log)) == 1, log[-4000:]
        assert not re.search(r"queue commit of \d+ change\(s\) failed", log)
        assert len(re.findall(r"queue manager started", log)) == 1
        assert not re.search(r"queue has space again", log)
        assert len(h.dest.messages) == N_MSGS
        assert queued_messages(t) == N_MSGS

        h.free()
        m = t.wait_log(r"queue has space again: committed (\d+) change\(s\) "
                       r"after (\d+) s", timeout=40)
        assert int(m[0][0]) >= 1 and int(m[0][1]) >= 8, m
        wait_for(lambda: queued_messages(t) == 0, 30,
                 what="the queue to end empty")
        assert t.pids_of("qmgr") == h.pid, "tern-qmgr restarted"
        log = t.log_text()
        assert len(re.findall(r"queue manager started", log)) == 1
        assert len(FULL.findall(log)) == 1
        assert set(h.markers()) == {b"m%d" % i for i in range(N_MSGS)}
        for i in range(N_MSGS):
            assert any(re.search(rf"to=<r{i}@dest\.test>.*status=sent", l)
                       for l in log.splitlines()), i
    finally:
        h.close()


def test_stop_while_results_are_held(tern, sinks, test_dir):
    """Stopped while the queue is still full: one last try, then
    tern-qmgr exits without the results, says so, and the next start
    delivers those messages again (a duplicate, never a loss)."""
    h = Held(tern, sinks, test_dir)
    t = h.t
    try:
        h.fill_while_in_flight()
        assert t.stop() == 0
        log = t.log_text()
        assert re.search(r"tern/qmgr\[\d+\]: warning: stopping with \d+ "
                         r"change\(s\) not committed \(queue map full at "
                         r"map_size_max\)", log), log[-4000:]
        assert len(re.findall(r"queue manager started", log)) == 1
        assert queued_messages(t) == N_MSGS

        h.free()
        t.start()
        t.wait_log(r"\d+ recipient\(s\) in flight at the last stop are due "
                   r"again")
        wait_for(lambda: queued_messages(t) == 0, 30,
                 what="the queue to end empty")
        got = h.markers()
        assert set(got) == {b"m%d" % i for i in range(N_MSGS)}
        assert len(got) > N_MSGS, "nothing was delivered again"
    finally:
        h.close()
