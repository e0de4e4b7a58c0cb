"""Crash tests: nothing that got a 250 is ever lost.

Submitters send uniquely numbered messages while tern is killed with
SIGKILL at random moments - all of it, or one daemon at a time - and
restarted. Afterwards every number that was acknowledged must arrive at
the sink (duplicates are counted and allowed; loss never is). A negative
control runs the same detector against a sink that silently drops one
acknowledged message and must see the loss."""
import os
import random
import re
import signal
import smtplib
import threading
import time

import pytest

from ternlib import Dns, wait_for

SINK_HOST = "127.0.0.3"
KILL_POINTS = 20
# Submissions stop after this many acknowledgements, so the backlog a
# run leaves stays within what the sink drains in the final wait.
MAX_ACKED = 2000
# ternd throttles a daemon that keeps dying soon after its start (1, 2, 4
# ... s), so one daemon is killed fewer times, each time mid-traffic.
SINGLE_KILLS = 5


class Submitters:
    """Threads that submit numbered messages until stopped and remember
    which numbers got a 250."""

    def __init__(self, port, threads=3):
        self.port = port
        self.acked = set()
        self.next = 0
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True)
                        for _ in range(threads)]

    def number(self):
        with self.lock:
            self.next += 1
            return self.next

    def done(self):
        with self.lock:
            return self.stop_flag.is_set() or len(self.acked) >= MAX_ACKED

    def run(self):
        while not self.done():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                    while not self.done():
                        n = self.number()
                        msg = (f"From: <app@example.test>\r\nTo: <n{n}@dest.test>\r\n"
                               f"Subject: crash-{n}\r\n\r\nmessage {n}\r\n")
                        s.sendmail("app@example.test", [f"n{n}@dest.test"], msg)
                        # sendmail returned: the final 250 was received
                        with self.lock:
                            self.acked.add(n)
                        time.sleep(0.05)	# a steady stream, not a flood
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)	# tern is down or refused: try again

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)


def delivered_numbers(sink):
    seen = {}
    for m in list(sink.messages):
        found = re.search(rb"Subject: crash-(\d+)", m["data"])
        if found:
            n = int(found.group(1))
            seen[n] = seen.get(n, 0) + 1
    return seen


def lost(acked, sink):
    seen = delivered_numbers(sink)
    return sorted(n for n in acked if n not in seen)


def instance(tern, sinks, test_dir, data_reply=None):
    sink = sinks(host=SINK_HOST, data_reply=data_reply)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{SINK_HOST}"], test_dir)
    t = tern({"delivery": {"dns_servers": dns.server, "smtp_port": str(sink.port),
                           "tls": "none", "retry_schedule": "1s"},
              "domain example.test": {}})
    port = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    t.start()
    return t, port, sink, dns


def wait_all_delivered(sub, sink, timeout=180):
    try:
        wait_for(lambda: not lost(sub.acked, sink), timeout,
                 what="every acknowledged message at the sink")
    except AssertionError:
        missing = lost(sub.acked, sink)
        raise AssertionError(f"{len(missing)} of {len(sub.acked)} acknowledged "
                             f"messages never arrived: {missing[:20]}")


def test_sigkill_of_everything_loses_nothing(tern, sinks, test_dir):
    t, port, sink, dns = instance(tern, sinks, test_dir)
    rng = random.Random(8)
    sub = Submitters(port)
    sub.start()
    try:
        for _ in range(KILL_POINTS):
            time.sleep(rng.uniform(0.2, 0.8))
            t.kill()		# SIGKILL to ternd and every daemon at once
            # the daemons die a moment after ternd: wait until the
            # listening socket is free before the restart
            wait_for(lambda: not t.group_pids(), 10, what="every process gone")
            t.start()
            assert t.proc.poll() is None, "ternd did not restart"
        time.sleep(1)
    finally:
        sub.stop()
    try:
        assert len(sub.acked) > KILL_POINTS, "too few messages got through"
        wait_all_delivered(sub, sink)
        dups = sum(c - 1 for c in delivered_numbers(sink).values())
        print(f"acked {len(sub.acked)}, duplicates {dups}")
    finally:
        dns.stop()


@pytest.mark.parametrize("daemon", ["cleanup", "signer", "qmgr", "smtp"])
def test_sigkill_of_one_daemon_loses_nothing(tern, sinks, test_dir, daemon):
    t, port, sink, dns = instance(tern, sinks, test_dir)
    rng = random.Random(daemon)
    sub = Submitters(port)
    sub.start()
    kills = 0
    try:
        deadline = time.monotonic() + 90
        while kills < SINGLE_KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.1, 0.4))
            for pid in t.pids_of(daemon):
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
        time.sleep(1)
    finally:
        sub.stop()
    try:
        assert kills >= SINGLE_KILLS, f"only {kills} kills of tern-{daemon}"
        assert sub.acked, "no message got through"
        wait_all_delivered(sub, sink)
    finally:
        dns.stop()


def test_negative_control_detector_sees_a_dropped_message(tern, sinks, test_dir):
    """A sink that says 250 but throws message 5 away: the detector of the
    tests above must report exactly that loss."""
    def drop_five(envelope):
        if b"Subject: crash-5\r\n" in (envelope.original_content or envelope.content):
            return "250 2.0.0 OK (dropped)"
        return None

    t, port, sink, dns = instance(tern, sinks, test_dir, data_reply=drop_five)
    sub = Submitters(port, threads=1)
    sub.start()
    try:
        wait_for(lambda: len(sub.acked) >= 10, 30, what="ten acknowledged messages")
    finally:
        sub.stop()
    try:
        wait_for(lambda: lost(sub.acked, sink) == [5], 60,
                 what="the detector to see exactly message 5 lost")
        with pytest.raises(AssertionError):
            wait_all_delivered(sub, sink, timeout=3)
    finally:
        dns.stop()
