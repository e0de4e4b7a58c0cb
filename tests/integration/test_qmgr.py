"""tern-qmgr from the build tree, run by ternd, with
tests/tools/fake_smtp_agent.py standing in for tern-smtp (rewritten in
parallel) and tests/tools/qmgr_fill standing in for tern-cleanup."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

import ternlib
from ternlib import FakeAgent, qmgr_fill, wait_for


def start(tern, verbose=False, **delivery):
    keys = {"retry_schedule": "1s 2s", "max_queue_lifetime": "1h"}
    keys.update(delivery)
    extra = keys.pop("extra", "")
    bounce = keys.pop("bounce", None)
    sections = {"delivery": keys}
    if bounce:
        sections["bounce"] = bounce
    if verbose:
        sections["server"] = {"verbose": "yes"}
    t = tern(sections, extra=extra)
    # The fake agent is the only delivery agent: the real tern-smtp idles;
    # tern-bounce idles too, so DSN-pending recipients stay for the checks
    # (test_bounce.py runs it for real).
    ternlib.idle_daemons(t, ["smtp", "bounce"])
    t.start()
    wait_for(lambda: os.path.exists(os.path.join(t.run_dir, "private", "qmgr")),
             5, what="qmgr socket")
    t.wait_log(r"queue manager started")
    return t


def events(t, *args):
    r = t.ternctl("events", *args, check=True)
    return [json.loads(l) for l in r.stdout.splitlines()]


def rcpt_events(t, qid, address):
    return [e["type"] for e in events(t) if e["queue_id"] == qid and
            e["recipient"] == address]


def in_queue(t, qid):
    return t.ternctl("queue", "show", qid).returncode == 0


def test_retry_schedule_deferred_then_delivered(tern):
    # verbose: the lines of attempts are the agent's to log; qmgr's own
    # copies come with -v only.
    t = start(tern, verbose=True)
    agent = FakeAgent(t, {"domains": {"retry.test": [
        "451 4.3.0 try later", "451 4.3.0 try later", "250 2.0.0 ok"]}})
    try:
        qid, = qmgr_fill(t, ["a@ok.test", "b@retry.test"])
        # Visible as deferred, with its reply, while it waits.
        def listed_deferred():
            out = t.ternctl("queue").stdout
            return "(deferred: 451 4.3.0 try later)" in out and qid in out
        wait_for(listed_deferred, 5, what="deferred recipient in ternctl queue")
        out = t.ternctl("queue").stdout
        assert "b@retry.test" in out and "a@ok.test" not in out
        assert "-- 1 Kbytes in 1 Request." in out
        wait_for(lambda: not in_queue(t, qid), 15, what="message removed")
        jobs = [j for j in agent.jobs() if j["domain"] == "retry.test"]
        assert len(jobs) == 3
        # retry_schedule 1s 2s: the gaps grow (with up to 10% jitter).
        assert jobs[0]["qid"] == qid and jobs[0]["arrival_ms"] > 0
        assert rcpt_events(t, qid, "b@retry.test") == \
            ["queued", "deferred", "deferred", "delivered"]
        assert rcpt_events(t, qid, "a@ok.test") == ["queued", "delivered"]
        log = t.log_text()
        assert re.search(qid + r": to=<b@retry.test>, relay=mx.retry.test"
                         r"\[127.0.0.1\]:25, delay=[0-9.]+, dsn=4.3.0, "
                         r"status=deferred \(451 4.3.0 try later\)", log)
        assert re.search(qid + r": to=<b@retry.test>, .*dsn=2.0.0, status=sent",
                         log)
        assert f"{qid}: removed" in log
        assert "Mail queue is empty" in t.ternctl("queue").stdout
        ev = [e for e in events(t) if e["type"] == "deferred"]
        assert [e["attempt"] for e in ev] == [1, 2]
        assert ev[1]["time_ms"] - ev[0]["time_ms"] >= 900
        trace = t.ternctl("trace", qid, check=True).stdout
        assert "deferred   <b@retry.test> attempt 2" in trace
        assert "delivered  <b@retry.test> attempt 3" in trace
        assert "now: no longer in the queue" in trace
    finally:
        agent.stop()


def test_expiry_fails_recipient_and_keeps_it_for_bounce(tern):
    t = start(tern, retry_schedule="1s", max_queue_lifetime="5s")
    agent = FakeAgent(t, {"default": "451 4.7.1 greylisted"})
    try:
        qid, = qmgr_fill(t, ["x@grey.test"])
        wait_for(lambda: "expired" in rcpt_events(t, qid, "x@grey.test"), 15,
                 what="expiry")
        exp = [e for e in events(t) if e["type"] == "expired"][0]
        assert exp["status"] == "5.4.7"
        assert "451 4.7.1 greylisted" in exp["text"]
        arrival = [e for e in events(t) if e["type"] == "queued"][0]["time_ms"]
        assert 5000 <= exp["time_ms"] - arrival < 9000
        attempts = len(agent.jobs())
        assert 3 <= attempts <= 7
        # Failed, with its failure DSN pending for tern-bounce.
        show = t.ternctl("queue", "show", qid, check=True).stdout
        assert "<x@grey.test> failed (active) (DSN pending)" in show
        assert re.search(qid + r": to=<x@grey.test>, .*dsn=5.4.7, status=expired",
                         t.log_text())
        time.sleep(2)
        assert len(agent.jobs()) == attempts, "no attempt after the expiry"
    finally:
        agent.stop()


def test_null_sender_expiry_removes_message(tern):
    t = start(tern, retry_schedule="1s", max_queue_lifetime="2s")
    agent = FakeAgent(t, {"default": "421 4.4.2 timeout"})
    try:
        qid, = qmgr_fill(t, ["y@grey.test"], sender="")
        # No DSN for the null sender: the message is finished and goes.
        wait_for(lambda: not in_queue(t, qid), 15, what="message removed")
        assert rcpt_events(t, qid, "y@grey.test")[-1] == "expired"
    finally:
        agent.stop()


def test_hard_bounce_suppresses_the_address(tern):
    t = start(tern)
    agent = FakeAgent(t, {"domains": {"hard.test": "550 5.1.1 no such user",
                                      "policy.test": "554 5.7.1 spam"}})
    try:
        q1, = qmgr_fill(t, ["Gone@hard.test", "p@policy.test"])
        wait_for(lambda: "bounced" in rcpt_events(t, q1, "Gone@hard.test"), 10,
                 what="bounce")
        wait_for(lambda: "bounced" in rcpt_events(t, q1, "p@policy.test"), 10,
                 what="bounce")
        lst = t.ternctl("suppression", "list", check=True).stdout
        assert "gone@hard.test\tbounce\t" in lst and "550 5.1.1 no such user" in lst
        assert "p@policy.test" not in lst, "a policy rejection does not suppress"
        n_jobs = len(agent.jobs())
        q2, = qmgr_fill(t, ["gone@hard.test"])
        wait_for(lambda: "suppressed" in rcpt_events(t, q2, "gone@hard.test"), 10,
                 what="suppressed event")
        assert len(agent.jobs()) == n_jobs, "a suppressed address is not tried"
        assert t.ternctl("suppression", "remove", "gone@hard.test").returncode == 0
        agent.set_rules({})
        q3, = qmgr_fill(t, ["gone@hard.test"])
        wait_for(lambda: "delivered" in rcpt_events(t, q3, "gone@hard.test"), 10,
                 what="delivery after removal")
    finally:
        agent.stop()


def test_soft_bounce_counted_by_stage_not_wording(tern):
    """A soft bounce counts against the address when the agent's result
    says it answered RCPT TO (stage rcpt); what its text says plays no
    part: a reply to MAIL FROM that claims RCPT TO in its text, or one
    with no stage, is never counted."""
    t = start(tern, bounce={"soft_bounce_limit": "2"})
    agent = FakeAgent(t, {"domains": {
        "rcpt.test": "rcpt:452 4.2.2 mailbox full",
        "mail.test": "mail:452 4.2.2 mailbox full (in reply to RCPT TO "
                     "command)",
        "none.test": "452 4.2.2 mailbox full (in reply to end of DATA "
                     "command)"}})
    rcpts = ["full@rcpt.test", "full@mail.test", "full@none.test"]
    try:
        qids = [qmgr_fill(t, rcpts)[0] for _ in range(2)]
        wait_for(lambda: "full@rcpt.test" in
                 t.ternctl("suppression", "list").stdout, 15,
                 what="the address suppressed after two messages")
        for qid in qids:
            for r in rcpts[1:]:
                wait_for(lambda: "deferred" in rcpt_events(t, qid, r), 10,
                         what=f"{r} deferred")
        lst = t.ternctl("suppression", "list", check=True).stdout
        assert "full@mail.test" not in lst and "full@none.test" not in lst, lst
        assert len(re.findall(r"suppressed <full@rcpt\.test>: 2 different "
                              r"messages soft-bounced", t.log_text())) == 1
    finally:
        agent.stop()


def test_suppression_commands(tern):
    t = start(tern)
    r = t.ternctl("suppression", "add", "Someone@Example.test", "asked us")
    assert r.returncode == 0, r.stderr
    t.ternctl("suppression", "add", "other@example.test", "complained by phone",
              check=True)
    t.ternctl("suppression", "add", "temp@example.test", "--expires", "1s",
              check=True)
    lst = t.ternctl("suppression", "list", check=True).stdout
    assert "someone@example.test\tmanual\t" in lst and "asked us" in lst
    assert "temp@example.test" in lst
    only = t.ternctl("suppression", "list", "--reason", "PHONE", check=True).stdout
    assert only.count("\n") == 1 and "other@example.test" in only
    time.sleep(1.2)
    assert "temp@example.test" not in t.ternctl("suppression", "list").stdout
    assert t.ternctl("suppression", "remove", "someone@example.test").returncode == 0
    r = t.ternctl("suppression", "remove", "someone@example.test")
    assert r.returncode == 1 and "not found" in r.stderr
    assert "someone@" not in t.ternctl("suppression", "list").stdout
    r = t.ternctl("suppression", "add", "not-an-address")
    assert r.returncode == 2
    # A message to a suppressed address fails without an attempt.
    agent = FakeAgent(t)
    try:
        qid, = qmgr_fill(t, ["other@example.test"])
        wait_for(lambda: "suppressed" in rcpt_events(t, qid, "other@example.test"),
                 10, what="suppressed")
        assert agent.jobs() == []
    finally:
        agent.stop()


def test_hold_release_delete_flush(tern):
    t = start(tern, retry_schedule="1h")
    agent = FakeAgent(t, {"default": "451 4.3.0 later"})
    try:
        held, = qmgr_fill(t, ["h@ok.test"], hold=True)
        qd, qf, qh = qmgr_fill(t, ["d@ok.test"]) + qmgr_fill(t, ["f@ok.test"]) + \
            qmgr_fill(t, ["k@ok.test"])
        wait_for(lambda: len(agent.jobs()) == 3, 10, what="three first attempts")
        out = t.ternctl("queue").stdout
        assert f"{held}!" in out, "a held message is marked with !"
        assert all(j["qid"] != held for j in agent.jobs())

        # delete: gone, with its event
        assert t.ternctl("queue", "delete", qd).returncode == 0
        assert not in_queue(t, qd)
        assert rcpt_events(t, qd, "d@ok.test")[-1] == "deleted"
        r = t.ternctl("queue", "delete", qd)
        assert r.returncode == 1 and "not found" in r.stderr
        assert t.ternctl("queue", "delete", "nonsense").returncode == 2

        # hold a deferred message: a flush leaves it alone
        assert t.ternctl("queue", "hold", qh).returncode == 0
        agent.set_rules({})
        r = t.ternctl("queue", "flush")
        assert r.returncode == 0 and "1 recipient(s) due now" in r.stdout
        wait_for(lambda: not in_queue(t, qf), 10, what="flushed message delivered")
        time.sleep(0.5)
        assert in_queue(t, qh) and in_queue(t, held)
        assert rcpt_events(t, qh, "k@ok.test")[-1] == "held"

        # release: due now
        for q in (qh, held):
            assert t.ternctl("queue", "release", q).returncode == 0
        wait_for(lambda: not in_queue(t, qh) and not in_queue(t, held), 10,
                 what="released messages delivered")
        assert rcpt_events(t, held, "h@ok.test") == ["queued", "released",
                                                     "delivered"]
        assert "Mail queue is empty" in t.ternctl("queue").stdout
    finally:
        agent.stop()


def test_many_at_once_named_from_stdin_and_all(tern):
    """delete/hold/release take several ids, "-" (ids from standard input,
    as postsuper -d -: the queue listing itself can be fed in) and ALL;
    one bad id changes nothing; ALL over 300 messages goes through."""
    t = start(tern, retry_schedule="1h")
    agent = FakeAgent(t, {"default": "451 4.3.0 later"})
    try:
        a, b, c = qmgr_fill(t, ["x@ok.test"], n=3)
        wait_for(lambda: len(agent.jobs()) == 3, 10, what="three attempts")
        r = t.ternctl("queue", "hold", a, b, "nonsense")
        assert r.returncode == 2 and "bad queue id 'nonsense'" in r.stderr
        assert "!" not in t.ternctl("queue").stdout, "nothing was held"

        r = t.ternctl("queue", "hold", a, b)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("\n") == 2, r.stdout
        listing = t.ternctl("queue").stdout
        assert f"{a}!" in listing and f"{b}!" in listing and f"{c}!" not in listing
        # release ALL takes the held ones only: c is not held, no failure
        r = t.ternctl("queue", "release", "ALL")
        assert r.returncode == 0 and r.stdout.count("\n") == 2, r
        assert "!" not in t.ternctl("queue").stdout

        # The listing fed back in: every message deleted, with its event.
        r = t.ternctl("queue", "delete", "-", input=t.ternctl("queue").stdout)
        assert r.returncode == 0, r.stderr
        assert "Mail queue is empty" in t.ternctl("queue").stdout
        assert rcpt_events(t, b, "x@ok.test")[-1] == "deleted"
        r = t.ternctl("queue", "delete", "-", input=f"{a}\n\n")
        assert r.returncode == 1 and "not found" in r.stderr

        ids = qmgr_fill(t, ["y@ok.test"], n=300, hold=True)
        r = t.ternctl("queue", "delete", "ALL")
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("\n") == 300
        assert "Mail queue is empty" in t.ternctl("queue").stdout
        assert rcpt_events(t, ids[-1], "y@ok.test")[-1] == "deleted"
    finally:
        agent.stop()


def test_agent_crash_and_job_timeout_defer_never_lose(tern):
    t = start(tern, job_timeout="2s")
    crashing = FakeAgent(t, {"domains": {"boom.test": "crash"}}, name="a1")
    try:
        qid, = qmgr_fill(t, ["c@boom.test"])
        wait_for(lambda: crashing.proc.poll() is not None, 10, what="agent crash")
        wait_for(lambda: "deferred" in rcpt_events(t, qid, "c@boom.test"), 10,
                 what="deferral after the crash")
        ev = [e for e in events(t) if e["type"] == "deferred"][0]
        assert ev["text"] == "delivery agent went away"
        t.wait_log(r"delivery agent went away with 1 job\(s\) in flight")
        # A decision of qmgr's own: logged without -v.
        t.wait_log(qid + r": to=<c@boom.test>, relay=none, delay=[0-9.]+, "
                   r"dsn=4.3.0, status=deferred \(delivery agent went away\)")
        hanging = FakeAgent(t, {"default": "hang"}, name="a2")
        wait_for(lambda: len(hanging.jobs()) >= 1, 10, what="job to hanging agent")
        wait_for(lambda: any(e["status"] == "4.4.7" for e in events(t)), 10,
                 what="job timeout")
        hanging.stop()
        good = FakeAgent(t, {}, name="a3")
        wait_for(lambda: not in_queue(t, qid), 15, what="delivery")
        assert rcpt_events(t, qid, "c@boom.test") == \
            ["queued", "deferred", "deferred", "delivered"]
        good.stop()
    finally:
        crashing.kill()


def test_kill_9_of_qmgr_loses_nothing(tern):
    t = start(tern)
    agent = FakeAgent(t, {"default": "hang"}, credits=50, name="a1")
    try:
        ids = qmgr_fill(t, ["r1@one.test", "r2@two.test"], n=40)
        # 20 per destination (the default), two destinations.
        wait_for(lambda: len(agent.jobs()) == 40, 10, what="jobs in flight")
        pid, = t.pids_of("qmgr")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: [p for p in t.pids_of("qmgr") if p != pid], 15,
                 what="qmgr restarted")
        t.wait_log(r"recipient\(s\) in flight at the last stop are due again")
        agent.kill()
        good = FakeAgent(t, {}, credits=20, name="a2")
        wait_for(lambda: "Mail queue is empty" in t.ternctl("queue").stdout, 30,
                 what="every message delivered")
        delivered = {(e["queue_id"], e["recipient"]) for e in events(t)
                     if e["type"] == "delivered"}
        assert delivered == {(q, r) for q in ids
                             for r in ("r1@one.test", "r2@two.test")}
        good.stop()
    finally:
        agent.kill()


def test_restart_with_work_in_flight(tern):
    t = start(tern)
    agent = FakeAgent(t, {"default": "hang"}, name="a1")
    qid, = qmgr_fill(t, ["w@slow.test"])
    wait_for(lambda: len(agent.jobs()) == 1, 10, what="job in flight")
    agent.kill()   # in flight: deferred, not lost
    wait_for(lambda: "deferred" in rcpt_events(t, qid, "w@slow.test"), 10,
             what="deferral")
    assert t.stop() == 0
    t.start()
    good = FakeAgent(t, {}, name="a2")
    try:
        wait_for(lambda: not in_queue(t, qid), 15, what="delivery after restart")
    finally:
        good.stop()


def test_destination_limits_and_rate(tern):
    t = start(tern, max_connections_per_destination="1",
              extra="[destination wide.test]\nmax_connections = 3\n\n"
                    "[destination slow.test]\nrate = 2/s\n")
    agent = FakeAgent(t, {"default": "hang"}, credits=30)
    try:
        qmgr_fill(t, ["a@narrow.test"], n=4)
        qmgr_fill(t, ["a@wide.test"], n=5)
        wait_for(lambda: len([j for j in agent.jobs()
                              if j["domain"] == "wide.test"]) == 3, 10,
                 what="3 wide.test jobs")
        time.sleep(0.5)
        doms = [j["domain"] for j in agent.jobs()]
        assert doms.count("narrow.test") == 1
        assert doms.count("wide.test") == 3
        agent.stop()
        fast = FakeAgent(t, {}, credits=30, name="fast")
        qmgr_fill(t, ["b@slow.test"], n=6)
        wait_for(lambda: len([j for j in fast.jobs()
                              if j["domain"] == "slow.test"]) == 6, 15,
                 what="6 slow.test jobs")
        times = sorted(e["time_ms"] for e in events(t) if e["type"] == "delivered"
                       and e["recipient"] == "b@slow.test")
        # A bucket of 2 then 2 per second: 6 jobs take about 2 seconds.
        assert times[-1] - times[0] >= 1500
        fast.stop()
    finally:
        agent.stop()


def test_events_since_and_follow(tern):
    t = start(tern)
    agent = FakeAgent(t)
    try:
        qid, = qmgr_fill(t, ["e@ok.test"])
        wait_for(lambda: not in_queue(t, qid), 10, what="delivery")
        all_ev = events(t)
        assert [e["seq"] for e in all_ev] == sorted(e["seq"] for e in all_ev)
        last = all_ev[-1]["seq"]
        assert events(t, "--since", str(last)) == [all_ev[-1]]
        assert len(events(t, "--since", "1h")) == len(all_ev)
        assert t.ternctl("events", "--since", "yesterday").returncode == 2
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                            time.gmtime(all_ev[-1]["time_ms"] / 1000 + 1))
        assert events(t, "--since", iso) == []
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                            time.gmtime(all_ev[0]["time_ms"] / 1000 - 1))
        assert len(events(t, "--since", iso)) == len(all_ev)
        follow = subprocess.Popen(
            [os.path.join(ternlib.BUILD_DIR, "src/ctl/ternctl"), "-c",
             t.config_path, "events", "--follow", "--since", str(last + 1)],
            stdout=subprocess.PIPE, text=True, env=ternlib.daemon_env())
        try:
            q2, = qmgr_fill(t, ["f@ok.test"])
            first = json.loads(follow.stdout.readline())
            second = json.loads(follow.stdout.readline())
            assert first["queue_id"] == q2 and first["type"] == "queued"
            assert second["type"] == "delivered" and second["code"] == 250
            assert second["remote_host"] == "mx.ok.test[127.0.0.1]:25"
        finally:
            follow.terminate()
            assert follow.wait(5) == 0
    finally:
        agent.stop()


def test_malformed_result_closes_agent_and_defers(tern):
    import socket
    import struct
    t = start(tern)
    path = os.path.join(t.run_dir, "private", "qmgr")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)

    def frame(typ, reqid, payload):
        return struct.pack(">IHHI", len(payload), typ, 0, reqid) + payload
    s.sendall(frame(1, 0, struct.pack(">I", ternlib.IPC_VERSION) +
                    struct.pack(">I", 5) + b"smtp\0"))
    s.sendall(frame(0x0401, 0, struct.pack(">I", 1)))
    qid, = qmgr_fill(t, ["m@ok.test"])
    buf = b""
    s.settimeout(10)
    reqid = None
    while reqid is None:
        buf += s.recv(65536)
        # skip HELLO, find the job
        while len(buf) >= 12:
            n, typ, _, rid = struct.unpack(">IHHI", buf[:12])
            if len(buf) < 12 + n:
                break
            buf = buf[12 + n:]
            if typ == 0x0402:
                reqid = rid
    s.sendall(frame(0x0403, reqid, struct.pack(">I", 1000000)))
    t.wait_log(r"malformed DELIVERY_RESULT")
    wait_for(lambda: "deferred" in rcpt_events(t, qid, "m@ok.test"), 10,
             what="deferral")
    s.close()
    agent = FakeAgent(t)
    try:
        wait_for(lambda: not in_queue(t, qid), 10, what="delivery")
    finally:
        agent.stop()


def test_ternctl_without_qmgr_fails_clearly(tern):
    t = tern()
    t.write_config()
    r = t.ternctl("queue", "flush")
    assert r.returncode == 1 and "cannot reach tern-qmgr" in r.stderr
    r = t.ternctl("queue", "show", "0123456789ABCDEF")
    assert r.returncode == 1 and "cannot open the queue" in r.stderr


def test_delay_warning_decided_once(tern):
    t = start(tern, retry_schedule="1s", delay_warning="2s")
    agent = FakeAgent(t, {"default": "451 4.3.0 later"})
    try:
        qid, = qmgr_fill(t, ["slow@grey.test"])
        quiet, = qmgr_fill(t, ["q@grey.test"], notify=8)   # NOTIFY=NEVER
        wait_for(lambda: "deferred (DSN pending)" in
                 t.ternctl("queue", "show", qid).stdout, 10,
                 what="delay DSN flag")
        show = t.ternctl("queue", "show", qid).stdout
        assert "1 with a DSN pending" in show
        # Still retried: a delay notice does not stop delivery.
        n = len([j for j in agent.jobs() if j["qid"] == qid])
        wait_for(lambda: len([j for j in agent.jobs() if j["qid"] == qid]) > n + 1,
                 10, what="more attempts")
        assert "1 with a DSN pending" in t.ternctl("queue", "show", qid).stdout
        assert "0 with a DSN pending" in t.ternctl("queue", "show", quiet).stdout
    finally:
        agent.stop()


def test_mailq_is_ternctl_queue(tern):
    """mailq, as installed (a link to sendmail, -C for the config), and
    sendmail -bp print exactly ternctl queue's listing: held, deferred
    with its reply, failed with a DSN pending."""
    t = start(tern, retry_schedule="1h")
    agent = FakeAgent(t, {"default": "250 2.0.0 ok",
                          "domains": {"grey.test": "rcpt:451 4.3.0 try later",
                                      "hard.test": "rcpt:550 5.1.1 no such user"}})
    try:
        held, = qmgr_fill(t, ["m@nowhere.test"], hold=True)
        deferred, = qmgr_fill(t, ["d@grey.test", "f@hard.test"])
        wait_for(lambda: "(deferred: 451 4.3.0 try later)" in
                 t.ternctl("queue").stdout and "(failed, DSN pending)" in
                 t.ternctl("queue").stdout, 10, what="the deferral and the failure")
    finally:
        agent.stop()
    mailq = os.path.join(t.dir, "mailq")
    os.symlink(os.path.join(ternlib.BUILD_DIR, "src/sendmail/sendmail"), mailq)
    ternctl = t.ternctl("queue", check=True).stdout
    for cmd in ([mailq, "-C", t.config_path],
                [os.path.join(ternlib.BUILD_DIR, "src/sendmail/sendmail"), "-C",
                 t.config_path, "-bp"]):
        r = subprocess.run(cmd, capture_output=True, text=True,
                           env=ternlib.daemon_env())
        assert r.returncode == 0, r.stderr
        assert r.stdout == ternctl, (r.stdout, ternctl)
    lines = ternctl.splitlines()
    assert lines[0].startswith("-Queue ID-------- --Size--")
    assert any(l.startswith(f"{held}! ") for l in lines), ternctl
    assert any(l.startswith(f"{deferred}  ") for l in lines), ternctl
    assert " " * 47 + "(deferred: 451 4.3.0 try later)" in lines
    assert " " * 47 + "d@grey.test" in lines
    assert " " * 47 + "(failed, DSN pending)" in lines
    assert lines[-1] == "-- 1 Kbytes in 2 Requests."


def test_corrupt_recipient_is_quarantined_and_the_rest_delivered(tern):
    t = start(tern)
    assert t.stop() == 0
    qid, = qmgr_fill(t, ["good@ok.test", "bad@ok.test"], tell_qmgr=False)
    # Overwrite recipient 1 with a record of an unknown version
    # (mdb_load -T: a line for the key, one for the value; a byte is a
    # backslash and two hex digits).
    key = "".join("\\%02x" % b for b in bytes.fromhex(qid) + (1).to_bytes(4, "big"))
    r = subprocess.run(["mdb_load", "-T", "-s", "recipients", t.queue_dir],
                       input=key + "\n\\09\n", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    t.start()
    agent = FakeAgent(t)
    try:
        wait_for(lambda: not in_queue(t, qid), 10, what="message finished")
        log = t.log_text()
        assert re.search(qid + r": recipient 1 quarantined", log), log[-3000:]
        assert rcpt_events(t, qid, "good@ok.test")[-1] == "delivered"
        assert len(t.pids_of("qmgr")) == 1 and "exit status" not in log
    finally:
        agent.stop()


def test_event_retention_purges_old_events(tern):
    t = tern({"delivery": {"retry_schedule": "1s"},
              "queue": {"event_retention": "1s"}})
    ternlib.idle_daemons(t, ["smtp", "bounce"])	# the fake agent delivers
    t.start()
    t.wait_log(r"queue manager started")
    agent = FakeAgent(t)
    try:
        qid, = qmgr_fill(t, ["old@ok.test"])
        wait_for(lambda: not in_queue(t, qid), 10, what="delivery")
        assert len([e for e in events(t) if e["queue_id"] == qid]) == 2
    finally:
        agent.stop()
    time.sleep(1.5)
    assert t.stop() == 0
    t.start()      # maintenance runs at start
    t.wait_log(r"purged 2 event\(s\) older than event_retention")
    assert [e for e in events(t) if e["queue_id"] == qid] == []
    r = t.ternctl("trace", qid)
    assert r.returncode == 1 and "no events" in r.stderr


def test_a_blocked_destination_does_not_starve_the_others(tern):
    t = start(tern, max_connections_per_destination="1")
    agent = FakeAgent(t, {"domains": {"slow.test": "hang"}}, credits=4)
    try:
        # 12,000 recipients for a destination that never answers: more
        # than the whole active set (10,000).
        qmgr_fill(t, extra=["-g", "slow.test:100"], n=120)
        wait_for(lambda: any(j["domain"] == "slow.test" for j in agent.jobs()),
                 10, what="a slow.test job")
        qid, = qmgr_fill(t, ["x@other.test"])
        wait_for(lambda: not in_queue(t, qid), 20,
                 what="other.test delivered despite slow.test")
        # slow.test kept one job in flight and its share of the rest.
        assert [j["domain"] for j in agent.jobs()].count("slow.test") == 1
    finally:
        agent.stop()


def test_attempts_are_logged_by_the_agent_not_twice(tern):
    t = start(tern)
    agent = FakeAgent(t)
    try:
        qid, = qmgr_fill(t, ["one@ok.test"])
        wait_for(lambda: not in_queue(t, qid), 10, what="delivery")
        t.wait_log(f"{qid}: removed")
        assert "status=sent" not in t.log_text()
    finally:
        agent.stop()


@pytest.mark.skipif(not ternlib.IS_ROOT, reason="needs root to be other users")
def test_only_root_and_terns_user_may_use_qmgr(tern):
    """run_dir/private keeps other users away from tern-qmgr; should its
    socket be reachable all the same, qmgr asks the kernel who the peer is
    and takes nothing (no CTL_DELETE) from another user. root and tern's
    user (ternctl) are served."""
    t = start(tern)
    qid, other = qmgr_fill(t, ["a@ok.test"], n=2)
    private = os.path.join(t.run_dir, "private")
    os.chmod(private, 0o711)
    try:
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             os.path.join(ternlib.BUILD_DIR, "src/ctl/ternctl"), "-c",
             t.config_path, "queue", "delete", qid],
            capture_output=True, text=True, env=ternlib.daemon_env(),
            timeout=60)
    finally:
        os.chmod(private, 0o700)
    assert r.returncode != 0 and "tern-qmgr" in r.stderr, r.stderr
    t.wait_log(r"refused a connection from uid 65534: only root and "
               r"tern's user may use tern-qmgr")
    assert in_queue(t, qid)
    r = subprocess.run(
        ["setpriv", "--reuid=tern", "--regid=tern", "--clear-groups",
         os.path.join(ternlib.BUILD_DIR, "src/ctl/ternctl"), "-c",
         t.config_path, "queue", "delete", qid],
        capture_output=True, text=True, env=ternlib.daemon_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert not in_queue(t, qid)
    assert t.ternctl("queue", "delete", other).returncode == 0
    assert not in_queue(t, other)
