"""ternd, the master: listeners, supervision, throttling, reload, shutdown,
configuration errors and privileges."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

import ternlib
from ternlib import BUILD_DIR, IS_ROOT, wait_for


def greeting(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return s.recv(512).decode()


def is_listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_listeners_up_and_clean_stop(tern):
    t = tern()
    sub = t.listen("submission", "submission")
    inb = t.listen("inbound", "inbound")
    t.start()
    assert greeting(sub).startswith("220 mail.tern.test ESMTP")
    assert greeting(inb).startswith("220 ")
    assert t.pids_of("smtpd"), "tern-smtpd is not running"
    assert t.stop() == 0
    assert t.group_pids() == [], "a process outlived ternd"
    assert not is_listening(sub) and not is_listening(inb)
    assert not os.path.exists(os.path.join(t.run_dir, "ternd.pid"))


def test_killed_daemon_is_logged_and_restarted(tern):
    t = tern()
    t.listen("submission", "submission")
    t.start()
    old = t.pids_of("smtpd")
    assert len(old) == 1
    os.kill(old[0], signal.SIGKILL)
    t.wait_log(rf"process tern-smtpd pid {old[0]} killed by signal 9")
    new = wait_for(lambda: [p for p in t.pids_of("smtpd") if p != old[0]],
                   timeout=10, what="a new tern-smtpd")
    assert new
    assert greeting(t.ports["submission"]).startswith("220 ")


def test_daemon_failing_at_start_is_throttled(tern):
    t = tern()
    t.listen("submission", "submission")
    # A daemon directory whose tern-smtpd cannot start.
    d = os.path.join(t.dir, "broken")
    os.makedirs(d)
    with open(os.path.join(d, "tern-smtpd"), "w") as f:
        f.write("#!/bin/sh\necho 'fatal: cannot start' >&2\nexit 1\n")
    os.chmod(os.path.join(d, "tern-smtpd"), 0o755)
    t.sections["server"]["daemon_dir"] = d
    t.start(wait=False)
    t.wait_log(r"service smtpd failed 3 time\(s\) in a row.*next start in 4s",
               timeout=15)
    time.sleep(2)
    starts = len(re.findall(r"process tern-smtpd pid \d+ exit status 1", t.log_text()))
    # 1s + 2s + 4s of backoff: no tight restart loop.
    assert 3 <= starts <= 4, t.log_text()
    assert t.stop() == 0


BAD_CONFIGS = [
    ("[server]\nhostname = a.test\nbogus_key = 1\n", 3, "unknown key 'bogus_key'"),
    ("[listen s]\naddress = 127.0.0.1:70000\nmode = submission\n", 2,
     "not a numeric address and port"),
    ("[listen s]\naddress = 127.0.0.1:2587\nmode = smtps\n"
     "tls_cert = /nonexistent/cert.pem\ntls_key = /nonexistent/key.pem\n", 4,
     "/nonexistent/cert.pem"),
    ("[delivery]\nretry_schedule = 5m 10q\n", 2, "'10q' is not a duration"),
]


@pytest.mark.parametrize("text,line,message", BAD_CONFIGS)
def test_bad_config_names_file_and_line(test_dir, text, line, message):
    path = os.path.join(test_dir, "bad.conf")
    with open(path, "w") as f:
        f.write(text)
    expected = f"{path}:{line}: "
    r = subprocess.run([os.path.join(BUILD_DIR, "src/ctl/ternctl"), "-c", path,
                        "check-config"], capture_output=True, text=True)
    assert r.returncode == 1
    assert expected in r.stderr and message in r.stderr, r.stderr
    r = subprocess.run([os.path.join(BUILD_DIR, "src/master/ternd"), "-f",
                        "-c", path], capture_output=True, text=True, timeout=10,
                       env=ternlib.daemon_env())
    assert r.returncode != 0
    assert expected in r.stderr and message in r.stderr, r.stderr
    assert "not starting" in r.stderr


def test_check_config_accepts_example(tern):
    t = tern()
    t.listen("submission", "submission")
    t.write_config()
    r = t.ternctl("check-config")
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_config_from_environment(tern, test_dir):
    t = tern()
    t.write_config()
    env = dict(os.environ, TERN_CONFIG=t.config_path)
    r = subprocess.run([os.path.join(BUILD_DIR, "src/ctl/ternctl"), "check-config"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and t.config_path in r.stdout


def test_reload_rebinds_listeners_and_keeps_serving(tern):
    t = tern()
    old_port = t.listen("submission", "submission")
    t.start()
    first = t.pids_of("smtpd")
    # A new port for the listener, and a second listener.
    new_port = ternlib.free_port()
    t.sections["listen submission"]["address"] = f"127.0.0.1:{new_port}"
    extra = t.listen("inbound", "inbound")
    t.write_config()
    t.proc.send_signal(signal.SIGHUP)
    t.wait_log(r"reload complete")
    ternlib.wait_port("127.0.0.1", new_port)
    assert greeting(new_port).startswith("220 ")
    assert greeting(extra).startswith("220 ")
    wait_for(lambda: not is_listening(old_port), what="old port closed")
    wait_for(lambda: t.pids_of("smtpd") and not set(first) & set(t.pids_of("smtpd")),
             what="smtpd replaced")

    # A broken config is refused and the running one stays.
    with open(t.config_path, "a") as f:
        f.write("\n[server]\nnonsense = 1\n")
    t.proc.send_signal(signal.SIGHUP)
    t.wait_log(r"reload failed: the configuration has errors")
    assert greeting(new_port).startswith("220 ")
    assert t.stop() == 0


class Session:
    """A raw SMTP client, to act exactly between the commands."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self):
        lines = []
        while True:
            line = self.file.readline().decode()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "".join(lines)

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def closed(self):
        return self.file.read() == b""

    def close(self):
        self.file.close()
        self.sock.close()


def real_tern(tern, **server):
    """Every daemon real; the submission port trusts loopback clients."""
    t = tern({"server": server, "domain example.test": {}})
    t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    t.start()
    return t


def test_sigterm_lets_an_open_transaction_finish(tern):
    """A session in the middle of its transaction when ternd gets SIGTERM
    still has its message queued: the front ends stop before cleanup,
    the signer and qmgr. Then it hears 421."""
    t = real_tern(tern)
    c = Session(t.ports["submission"])
    assert c.cmd("EHLO c.test").startswith("250")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
    t.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: not is_listening(t.ports["submission"]),
             what="listener closed")
    time.sleep(0.5)
    assert t.proc.poll() is None, "ternd exited with a transaction open"
    assert c.cmd("DATA").startswith("354")
    r = c.cmd("From: <app@example.test>\r\nSubject: drain\r\n\r\nbody\r\n.")
    assert r.startswith("250 2.0.0 Ok: queued as "), r
    qid = r.split("queued as ")[1].strip()
    # Told at once, without a command: nothing keeps the shutdown waiting.
    assert c.reply().startswith("421 4.3.2"), "no 421 after the transaction"
    assert c.closed()
    c.close()
    assert t.proc.wait(10) == 0
    assert t.group_pids() == []
    assert "did not finish in time" not in t.log_text()
    listing = t.ternctl("queue", check=True).stdout
    assert qid in listing and "u@dest.test" in listing, listing


def test_cleanup_sigterm_waits_for_open_transactions(tern):
    """tern-cleanup told to stop on its own (not by ternd: tern-smtpd runs
    on) keeps serving the transactions tern-smtpd has open, then exits;
    ternd starts a new one."""
    t = real_tern(tern)
    old = wait_for(lambda: t.pids_of("cleanup"), what="tern-cleanup")[0]
    c = Session(t.ports["submission"])
    assert c.cmd("EHLO c.test").startswith("250")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
    os.kill(old, signal.SIGTERM)
    t.wait_log(r"draining: waiting for 1 open transaction")
    assert old in t.pids_of("cleanup")
    assert c.cmd("DATA").startswith("354")
    r = c.cmd("From: <app@example.test>\r\nSubject: x\r\n\r\nbody\r\n.")
    assert r.startswith("250 2.0.0 Ok: queued as "), r
    qid = r.split("queued as ")[1].strip()
    wait_for(lambda: old not in t.pids_of("cleanup"), what="the old cleanup gone")
    wait_for(lambda: t.pids_of("cleanup"), what="a new tern-cleanup")
    assert qid in t.ternctl("queue", check=True).stdout
    # The session goes on with the new tern-cleanup.
    wait_for(lambda: c.cmd("MAIL FROM:<app@example.test>").startswith("250"),
             timeout=10, interval=0.5, what="a new transaction")
    c.close()
    assert t.stop() == 0


@pytest.mark.parametrize("how", ["sigterm", "reload"])
def test_cleanup_drain_timeout_exits_without_open_transactions(
        tern, sinks, test_dir, how):
    """tern-cleanup told to stop (a SIGTERM of its own, or a reload) while
    a message is still being sent (DATA begun, no final dot) waits
    shutdown_timeout for it, then exits without it: the message was never
    acknowledged, so it is neither queued nor delivered, and its client
    hears a 4xx or a closed connection, never a 250."""
    sink = sinks(host="127.0.0.3")
    dns = ternlib.Dns(["mx-host=dest.test,mx.dest.test,10",
                       "host-record=mx.dest.test,127.0.0.3"], test_dir)
    try:
        t = tern({"server": {"shutdown_timeout": "2s"},
                  "domain example.test": {},
                  "delivery": {"dns_servers": dns.server,
                               "smtp_port": str(sink.port), "tls": "none",
                               "retry_schedule": "1s"}})
        t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
        t.start()
        old = wait_for(lambda: t.pids_of("cleanup"), what="tern-cleanup")[0]
        c = Session(t.ports["submission"])
        assert c.cmd("EHLO c.test").startswith("250")
        assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
        assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
        assert c.cmd("DATA").startswith("354")
        c.sock.sendall(b"From: <app@example.test>\r\nSubject: partial\r\n"
                       b"\r\nthe first half of the body\r\n")
        told = time.monotonic()
        if how == "sigterm":
            os.kill(old, signal.SIGTERM)
        else:
            t.proc.send_signal(signal.SIGHUP)
        t.wait_log(r"tern/cleanup\[%d\]: draining: waiting for 1 open "
                   r"transaction" % old)
        wait_for(lambda: old not in t.pids_of("cleanup"), timeout=10,
                 interval=0.02, what="the old tern-cleanup to exit")
        took = time.monotonic() - told
        assert 1.8 <= took <= 2 + 2.0, took
        t.wait_log(r"tern/cleanup\[%d\]: warning: draining: 1 transaction\(s\) "
                   r"still open after 2 s; exiting without them" % old)
        # The rest of the message and its dot: whatever the session says,
        # it is not a 250.
        try:
            c.sock.sendall(b"the second half\r\n.\r\n")
            r = c.reply()
        except OSError:
            r = ""
        assert r == "" or r.startswith("4"), r
        c.close()
        # ternd runs a new tern-cleanup; a whole message goes through it
        # to the sink, the partial one is nowhere.
        wait_for(lambda: [p for p in t.pids_of("cleanup") if p != old],
                 what="a new tern-cleanup")

        def sent():
            c2 = Session(t.ports["submission"])
            try:
                c2.cmd("EHLO c.test")
                if not c2.cmd("MAIL FROM:<app@example.test>").startswith("250"):
                    return None
                assert c2.cmd("RCPT TO:<u@dest.test>").startswith("250")
                assert c2.cmd("DATA").startswith("354")
                return c2.cmd("From: <app@example.test>\r\nSubject: whole\r\n"
                              "\r\nbody\r\n.")
            finally:
                c2.close()
        r = wait_for(sent, timeout=15, interval=0.5, what="a new transaction")
        assert r.startswith("250 2.0.0 Ok: queued as "), r
        got = sink.wait_messages(1, timeout=30)
        time.sleep(1)
        assert len(sink.messages) == 1
        assert b"Subject: whole" in got[0]["data"]
        # tern-cleanup logs from= for a message it commits: one only.
        assert len(re.findall(r"tern/cleanup\[\d+\]: [0-9A-F]+: from=<",
                              t.log_text())) == 1, t.log_text()
        listing = t.ternctl("queue", check=True).stdout
        assert "u@dest.test" not in listing, listing
        events = t.ternctl("events", check=True).stdout
        assert events.count('"queued"') == 1, events
        assert t.stop() == 0
    finally:
        dns.stop()


def test_back_end_dying_while_front_ends_drain_is_restarted(tern):
    """While tern-smtpd finishes its sessions, tern-cleanup is still
    supervised: killed, it comes back for them."""
    t = real_tern(tern)
    old = wait_for(lambda: t.pids_of("cleanup"), what="tern-cleanup")[0]
    c = Session(t.ports["submission"])
    assert c.cmd("EHLO c.test").startswith("250")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    t.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: not is_listening(t.ports["submission"]),
             what="listener closed")
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: [p for p in t.pids_of("cleanup") if p != old],
                   what="a new tern-cleanup")
    assert new
    # The transaction lost its cleanup: never a 250 for it.
    assert c.cmd("RCPT TO:<u@dest.test>")[:1] in ("2", "4")
    assert c.cmd("RSET").startswith("250")
    assert c.reply().startswith("421 4.3.2")
    c.close()
    assert t.proc.wait(10) == 0
    assert t.group_pids() == []


def test_reload_lets_an_open_transaction_finish(tern):
    """SIGHUP replaces every daemon at once: the old tern-cleanup waits for
    the transaction the old tern-smtpd's session has open."""
    t = real_tern(tern)
    c = Session(t.ports["submission"])
    assert c.cmd("EHLO c.test").startswith("250")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
    t.proc.send_signal(signal.SIGHUP)
    t.wait_log(r"draining: waiting for 1 open transaction")
    assert c.cmd("DATA").startswith("354")
    r = c.cmd("From: <app@example.test>\r\nSubject: x\r\n\r\nbody\r\n.")
    assert r.startswith("250 2.0.0 Ok: queued as "), r
    assert c.reply().startswith("421 4.3.2")
    c.close()
    qid = r.split("queued as ")[1].strip()
    assert qid in t.ternctl("queue", check=True).stdout
    assert t.stop() == 0


def test_sigterm_while_readers_wait_for_the_queue(tern):
    """tern-smtp and tern-bounce wait up to 30 s at start for a writer to
    create the queue (they may not open it later, sandbox.c). A SIGTERM
    during that wait ends them at once: here no writer can ever create
    it (data.mdb is a directory), and ternd still stops at once, nobody
    killed."""
    t = tern({"server": {"verbose": "yes"}, "domain example.test": {}})
    os.makedirs(os.path.join(t.queue_dir, "data.mdb"))
    t.start(wait=False)
    for daemon in ("smtp", "bounce"):
        t.wait_log(rf"tern/{daemon}\[\d+\]: warning: queue .*: opening the "
                   r"environment", timeout=20)
    started = time.monotonic()
    assert t.stop(timeout=15) == 0
    assert time.monotonic() - started < 5
    text = t.log_text()
    assert "did not finish in time" not in text, text
    assert re.search(r"tern/smtp\[\d+\]: signal 15 during setup: exiting",
                     text), text
    assert t.group_pids() == []


def test_sigterm_tells_an_idle_session_421_at_once(tern):
    t = real_tern(tern)
    port = t.ports["submission"]
    c = Session(port)
    assert c.greeting.startswith("220")
    assert c.cmd("EHLO c.test").startswith("250")
    started = time.monotonic()
    t.proc.send_signal(signal.SIGTERM)
    # Unasked: the session sits idle, the 421 comes anyway.
    r = c.reply()
    assert r.startswith("421 4.3.2 mail.tern.test Service shutting down"), r
    assert c.closed()
    c.close()
    assert t.proc.wait(10) == 0
    # Well within shutdown_timeout (10s): nobody was killed.
    assert time.monotonic() - started < 5
    assert "did not finish in time" not in t.log_text()
    assert not is_listening(port)
    assert t.group_pids() == []


def test_hung_daemons_are_killed_within_shutdown_timeout(tern):
    """A session stuck in its transaction holds tern-smtpd until half the
    timeout, then it is killed and the back ends are stopped; a back end
    that ignores SIGTERM is killed at the full timeout."""
    t = tern({"server": {"shutdown_timeout": "2s"}, "domain example.test": {}})
    ternlib.idle_daemons(t, ["bounce"])
    with open(os.path.join(t.sections["server"]["daemon_dir"], "tern-bounce"),
              "w") as f:
        f.write("#!/bin/sh\ntrap '' TERM\nexec sleep 1000000\n")
    port = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    t.start()
    c = Session(port)
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    started = time.monotonic()
    t.proc.send_signal(signal.SIGTERM)
    assert t.proc.wait(15) == 0
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 5, elapsed
    log = t.log_text()
    smtpd = log.index("process tern-smtpd pid")
    assert re.search(r"process tern-smtpd pid \d+ did not finish in time", log)
    assert re.search(r"process tern-bounce pid \d+ did not finish in time", log)
    # smtpd was killed before the back ends were asked to stop.
    assert smtpd < log.index("process tern-bounce pid")
    assert t.group_pids() == []
    c.close()


def test_second_master_refused(tern):
    t = tern()
    t.listen("submission", "submission")
    t.start()
    r = subprocess.run([os.path.join(BUILD_DIR, "src/master/ternd"), "-f", "-c",
                        t.config_path], capture_output=True, text=True, timeout=10,
                       env=ternlib.daemon_env())
    assert r.returncode != 0
    assert "another ternd" in r.stderr or "cannot listen" in r.stderr


@pytest.mark.skipif(not IS_ROOT, reason="needs root to test the privilege drop")
def test_root_drops_privileges_and_chroots_smtpd(tern):
    t = tern()
    t.listen("submission", "submission")
    t.start()
    pid = t.pids_of("smtpd")[0]
    import pwd
    tern_uid = pwd.getpwnam("tern").pw_uid

    def uids():
        with open(f"/proc/{pid}/status") as f:
            return [int(x) for l in f if l.startswith("Uid") for x in l.split()[1:]]
    # The daemon may still be starting (forked, not yet dropped): give it
    # a moment, then every uid must be tern's.
    ternlib.wait_for(lambda: all(x == tern_uid for x in uids()), 5,
                     what="smtpd to drop privileges")
    assert all(x == tern_uid for x in uids())
    assert os.readlink(f"/proc/{pid}/root") == \
        os.path.realpath(os.path.join(t.run_dir, "jail", "smtpd"))
    assert os.stat(t.queue_dir).st_uid == tern_uid
    assert oct(os.stat(os.path.join(t.run_dir, "private")).st_mode & 0o777) == "0o700"


@pytest.mark.skipif(not IS_ROOT, reason="needs root for the chroot")
def test_jails_hold_only_the_sockets_each_daemon_may_reach(tern):
    """tern-smtpd parses network input: its root is its jail, where the one
    socket is private/cleanup (a socket of tern-cleanup's that ternd bound
    there, not run_dir/private/cleanup), never private/qmgr or
    private/signer. tern-signer's jail is empty."""
    import grp
    import pwd
    import stat
    t = tern()
    t.listen("submission", "submission")
    t.start()
    t.wait_log(r"smtpd.*connected to cleanup")
    tern_user = pwd.getpwnam("tern")
    smtpd_jail = os.path.realpath(os.path.join(t.run_dir, "jail", "smtpd"))
    signer_jail = os.path.realpath(os.path.join(t.run_dir, "jail", "signer"))
    for name, jail, want in (("smtpd", smtpd_jail, ["private", "private/cleanup"]),
                             ("signer", signer_jail, [])):
        pid = t.pids_of(name)[0]

        def uids():
            with open(f"/proc/{pid}/status") as f:
                return [int(x) for l in f if l.startswith("Uid")
                        for x in l.split()[1:]]
        # The chroot comes before the privilege drop (daemon.c).
        wait_for(lambda: set(uids()) == {tern_user.pw_uid}, 5,
                 what=f"tern-{name} to drop privileges")
        # What the daemon sees as / (read through its own root link): with
        # run_dir as its root it would see private/qmgr and private/signer.
        seen = ternlib.tree(f"/proc/{pid}/root")
        assert "private/qmgr" not in seen and "private/signer" not in seen, seen
        assert seen == want, name
        assert os.readlink(f"/proc/{pid}/root") == jail
        # What is in its jail, seen from outside.
        assert ternlib.tree(jail) == want, name
        assert os.stat(jail).st_uid == 0 and os.stat(jail).st_mode & 0o022 == 0
    # Every other socket is in run_dir/private, out of smtpd's reach.
    assert {"qmgr", "signer", "cleanup"} <= set(os.listdir(
        os.path.join(t.run_dir, "private")))
    jailed = os.stat(os.path.join(smtpd_jail, "private", "cleanup"))
    general = os.stat(os.path.join(t.run_dir, "private", "cleanup"))
    assert stat.S_ISSOCK(jailed.st_mode) and jailed.st_nlink == 1
    assert jailed.st_ino != general.st_ino and general.st_nlink == 1
    assert jailed.st_uid == 0
    # tern-cleanup was handed both, under their own names.
    with open(f"/proc/{t.pids_of('cleanup')[0]}/environ", "rb") as f:
        fds = [v for v in f.read().split(b"\0") if v.startswith(b"TERN_FDS=")]
    assert re.search(rb"\bunix:cleanup=\d+", fds[0]), fds
    assert re.search(rb"\bunix:cleanup-smtpd=\d+", fds[0]), fds
    # The daemons' user may pass through the jail's private/, not change
    # it; other users may not enter it.
    priv = os.stat(os.path.join(smtpd_jail, "private"))
    assert (priv.st_uid, priv.st_gid) == (0, tern_user.pw_gid)
    assert oct(priv.st_mode & 0o777) == "0o710", grp.getgrgid(priv.st_gid)
    # ternd stops: the jail's socket goes with the others.
    assert t.stop() == 0
    assert ternlib.tree(smtpd_jail) == ["private"]


@pytest.mark.skipif(not IS_ROOT, reason="needs root to switch to another user")
def test_ordinary_user_runs_everything_as_itself(tern):
    """Started by an ordinary user, ternd needs no root and runs every
    daemon as that user (how developers and tests run it)."""
    t = tern()
    t.sections["server"].pop("user", None)
    t.listen("submission", "submission")
    os.chown(t.dir, 65534, 65534)
    t.write_config()
    t._link_daemons()
    log = open(t.log_path, "ab")
    t.proc = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         os.path.join(BUILD_DIR, "src/master/ternd"), "-f", "-c", t.config_path],
        stdout=log, stderr=subprocess.STDOUT, env=ternlib.daemon_env(),
        start_new_session=True)
    ternlib.wait_port("127.0.0.1", t.ports["submission"])
    pids = wait_for(lambda: t.pids_of("smtpd"), what="smtpd")
    with open(f"/proc/{pids[0]}/status") as f:
        uid = [l.split()[1] for l in f if l.startswith("Uid")][0]
    assert uid == "65534"
    assert greeting(t.ports["submission"]).startswith("220 ")
    assert t.stop() == 0


def test_systemd_notify_ready_and_stopping(tern, test_dir):
    """With NOTIFY_SOCKET set (as systemd does for Type=notify), ternd
    reports READY=1 once the daemons are started and STOPPING=1 on SIGTERM."""
    r = subprocess.run(["grep", "-q", "define HAVE_SYSTEMD 1",
                        os.path.join(BUILD_DIR, "autoconfig.h")])
    assert r.returncode == 0, "tools/check builds --with-systemd"
    path = os.path.join(test_dir, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(path, 0o666)
    s.settimeout(10)
    t = tern()
    t.listen("submission", "submission")
    t.write_config()
    t._link_daemons()
    env = dict(ternlib.daemon_env(), NOTIFY_SOCKET=path)
    t.proc = subprocess.Popen([os.path.join(BUILD_DIR, "src/master/ternd"), "-f",
                               "-c", t.config_path], env=env,
                              stdout=open(t.log_path, "ab"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    msgs = s.recv(4096).decode()
    assert "READY=1" in msgs
    assert is_listening(t.ports["submission"])
    t.proc.send_signal(signal.SIGTERM)
    assert "STOPPING=1" in s.recv(4096).decode()
    assert t.proc.wait(10) == 0
    s.close()


def test_jail_holds_only_the_socket_ternd_bound(tern):
    """Should something put another socket (here a link to tern-qmgr's) in
    the place of the socket ternd bound in tern-smtpd's jail, ternd removes
    it and does not start tern-smtpd without its jail."""
    t = tern()
    t.listen("submission", "submission")
    t.start()
    t.wait_log(r"smtpd.*connected to cleanup")
    private = os.path.join(t.run_dir, "private")
    jail_private = os.path.join(t.run_dir, "jail", "smtpd", "private")
    os.link(os.path.join(private, "qmgr"), os.path.join(jail_private, "swap"))
    os.rename(os.path.join(jail_private, "swap"),
              os.path.join(jail_private, "cleanup"))
    old = t.pids_of("smtpd")
    os.kill(old[0], signal.SIGKILL)
    t.wait_log(r"jail/smtpd/private/cleanup is not the socket ternd bound: "
               r"removing it")
    t.wait_log(r"not starting tern-smtpd without its jail")
    assert t.pids_of("smtpd") == []
    assert ternlib.tree(os.path.join(t.run_dir, "jail", "smtpd")) == ["private"]
    assert t.stop() == 0
