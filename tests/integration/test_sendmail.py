"""The sendmail command and tern-pickup, against the cleanup test double
(tests/tools/cleanup_double.py) on run_dir/public/sendmail and
run_dir/private/cleanup: submission with the peer's identity, -t, -i,
refusals and exit codes, malicious arguments, and the maildrop path
while the daemons are down. Then the same socket served by the real
tern-cleanup under ternd: its mode and owner, a user's message queued
before sendmail exits, a forged BEGIN overridden by the kernel's
identity, refusals as exit codes, reload and stop."""
import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

import pytest

import ternlib
from ternlib import BUILD_DIR, IS_ROOT, wait_for

sys.path.insert(0, os.path.join(ternlib.SRC_DIR, "tests", "tools"))
from cleanup_double import CleanupDouble  # noqa: E402

SENDMAIL = os.path.join(BUILD_DIR, "src/sendmail/sendmail")
PICKUP = os.path.join(BUILD_DIR, "src/sendmail/tern-pickup")
EX_OK, EX_USAGE, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_NOPERM = 0, 64, 65, 67, 75, 77


@pytest.fixture
def conf(tern):
    t = tern()
    t.write_config()
    os.makedirs(t.run_dir, mode=0o755, exist_ok=True)
    os.chmod(t.config_path, 0o644)
    return t


@pytest.fixture
def double(conf):
    made = []

    def make(**kw):
        d = CleanupDouble([os.path.join(conf.run_dir, "public", "sendmail"),
                           os.path.join(conf.run_dir, "private", "cleanup")],
                          os.path.join(conf.dir, "double"), **kw).start()
        os.chmod(os.path.join(conf.run_dir, "public"), 0o755)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
        assert not d.errors, f"protocol errors seen by the double: {d.errors}"


def sendmail(conf, args, data, user=None, prog=SENDMAIL, conf_path=None):
    cmd = [prog, "-C", conf_path or conf.config_path, *args]
    if user is not None:
        pw = pwd.getpwnam(user)
        cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
               "--clear-groups", *cmd]
    return subprocess.run(cmd, input=data, capture_output=True,
                          env=ternlib.daemon_env(), timeout=60)


def test_submits_with_crlf_and_leading_dot_intact(conf, double):
    d = double()
    body = b"Subject: hi\n\nline one\n.leading dot\n..two dots\nlast"
    r = sendmail(conf, ["-i", "-f", "app@example.test", "rcpt@example.net"], body)
    assert r.returncode == EX_OK, r.stderr
    assert len(d.messages) == 1
    m = d.messages[0]
    assert m["sender"] == "app@example.test"
    assert m["rcpts"] == ["rcpt@example.net"]
    assert m["socket"] == "public" and m["source"] == 3
    c = m["content"]
    assert "\r\n.leading dot\r\n..two dots\r\nlast\r\n" in c
    assert "\n" not in c.replace("\r\n", "")
    assert c.startswith("From: ") and "<app@example.test>" in c.splitlines()[0] \
        or c.startswith("From: app@example.test")
    assert m["size"] == len(c.encode("latin-1"))


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become another user")
def test_non_root_user_is_identified_by_the_kernel(conf, double):
    d = double()
    r = sendmail(conf, ["-t", "-i"],
                 b"To: Someone <to@example.net>\nSubject: x\n\nhello\n",
                 user="nobody")
    assert r.returncode == EX_OK, r.stderr
    m = d.messages[0]
    assert m["peer_uid"] == 65534
    assert m["auth_user"] == "uid=65534"
    assert m["sender"] == "nobody@mail.tern.test"
    assert m["rcpts"] == ["to@example.net"]


def test_t_reads_to_cc_bcc_and_removes_bcc(conf, double):
    d = double()
    msg = (b"From: Me <me@example.test>\r\n"
           b"To: \"Doe, J\" <a@example.net>, b@example.net (comment)\r\n"
           b"Cc: undisclosed: c@example.net;\r\n"
           b"Bcc: hidden@example.net,\r\n secret@example.net\r\n"
           b"Subject: t\r\n\r\nBcc: in the body stays\r\n")
    r = sendmail(conf, ["-t", "-oi", "extra@example.net"], msg)
    assert r.returncode == EX_OK, r.stderr
    m = d.messages[0]
    assert sorted(m["rcpts"]) == sorted([
        "extra@example.net", "a@example.net", "b@example.net",
        "c@example.net", "hidden@example.net", "secret@example.net"])
    assert "hidden@" not in m["content"].split("\r\n\r\n")[0]
    assert "Bcc: in the body stays" in m["content"]
    assert m["content"].startswith("From: Me <me@example.test>\r\n")


def test_a_dot_line_ends_the_message_without_i(conf, double):
    d = double()
    r = sendmail(conf, ["to@example.net"], b"Subject: x\n\nkept\n.\nnot kept\n")
    assert r.returncode == EX_OK, r.stderr
    assert "kept\r\n" in d.messages[0]["content"]
    assert "not kept" not in d.messages[0]["content"]


def test_full_name_is_quoted_in_from(conf, double):
    d = double()
    r = sendmail(conf, ["-F", 'Eve "the" \\ Admin', "-f", "eve@example.test",
                        "to@example.net"], b"Subject: x\n\nbody\n")
    assert r.returncode == EX_OK, r.stderr
    first = d.messages[0]["content"].split("\r\n")[0]
    assert first == 'From: "Eve \\"the\\" \\\\ Admin" <eve@example.test>'


@pytest.mark.parametrize("args,data,code", [
    (["-f", "a@b\nBcc: x@y", "to@example.net"], b"x\n", EX_USAGE),
    (["-F", "Name\r\nBcc: evil@example.net", "to@example.net"], b"x\n", EX_USAGE),
    (["-F", "N" * 10000, "to@example.net"], b"x\n", EX_USAGE),
    (["-f", "a" * 10000 + "@example.net", "to@example.net"], b"x\n", EX_USAGE),
    (["to@example.net"], b"Subject: x\n\nnul\0here\n", EX_DATAERR),
    ([], b"Subject: no recipient\n\n", EX_USAGE),
    (["bad address@example.net"], b"x\n", EX_USAGE),
    (["-N", "never,success", "to@example.net"], b"x\n", EX_USAGE),
    (["-bz", "to@example.net"], b"x\n", EX_USAGE),
])
def test_malicious_or_bad_input_is_refused(conf, double, args, data, code):
    d = double()
    r = sendmail(conf, args, data)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stderr.startswith(b"sendmail: ")
    assert d.messages == []


def test_ignored_postfix_options_are_accepted(conf, double):
    d = double()
    r = sendmail(conf, ["-oem", "-om", "-o7", "-odi", "-Am", "-U", "-n",
                        "-L", "label", "-h", "3", "-G", "-N", "success,failure",
                        "-R", "hdrs", "-V", "env-1", "-B", "8BITMIME",
                        "to@example.net"], b"Subject: x\n\n\xc3\xa9t\xc3\xa9\n")
    assert r.returncode == EX_OK, r.stderr
    m = d.messages[0]
    assert m["notify"] == [0x01 | 0x02]
    assert m["ret"] == 2 and m["envid"] == "env-1" and m["body"] == 1


def test_h_takes_the_hop_count_as_its_argument(conf, double):
    """-h N is Postfix's hop count: N is not a recipient."""
    d = double()
    r = sendmail(conf, ["-h", "5", "you@example.net"], b"Subject: hops\n\nx\n")
    assert r.returncode == EX_OK, r.stderr
    assert [m["rcpts"] for m in d.messages] == [["you@example.net"]]
    # Stuck to the option, as getopt allows.
    r = sendmail(conf, ["-h17", "-t"], b"To: <t@example.net>\nSubject: x\n\nx\n")
    assert r.returncode == EX_OK, r.stderr
    assert d.messages[1]["rcpts"] == ["t@example.net"]


def test_refusals_map_to_sysexits(conf, double):
    d = double(rcpt_reply=lambda a: "550 5.1.1 suppressed" if a.startswith("bad") else None)
    r = sendmail(conf, ["bad@example.net"], b"x\n")
    assert r.returncode == EX_NOUSER
    assert b"550 5.1.1 suppressed" in r.stderr
    r = sendmail(conf, ["bad@example.net", "good@example.net"], b"x\n")
    assert r.returncode == EX_OK, r.stderr
    assert b"<bad@example.net>: 550" in r.stderr
    assert d.messages[-1]["rcpts"] == ["good@example.net"]
    d.end_reply = lambda t: "452 4.3.1 queue full"
    r = sendmail(conf, ["good@example.net"], b"x\n")
    assert r.returncode == EX_TEMPFAIL
    assert b"452 4.3.1 queue full" in r.stderr
    d.end_reply = None
    d.begin_reply = lambda t: "550 5.7.1 not allowed"
    r = sendmail(conf, ["good@example.net"], b"x\n")
    assert r.returncode == EX_NOPERM


def run_pickup(conf):
    log = open(os.path.join(conf.dir, "pickup.log"), "ab")
    return subprocess.Popen([PICKUP, "-c", conf.config_path], stdout=log,
                            stderr=subprocess.STDOUT, env=ternlib.daemon_env())


def stop(p):
    p.terminate()
    assert p.wait(10) == 0


def pickup_log(conf):
    with open(os.path.join(conf.dir, "pickup.log"), "rb") as f:
        return f.read().decode("utf-8", "replace")


def maildrop_files(conf):
    d = os.path.join(conf.queue_dir, "maildrop")
    return [f for f in os.listdir(d) if not f.startswith(".")]


def test_daemons_down_message_is_kept_and_picked_up_later(conf, double):
    # A previous start of tern made the maildrop.
    p = run_pickup(conf)
    wait_for(lambda: os.path.isdir(os.path.join(conf.queue_dir, "maildrop")))
    stop(p)
    body = b"Subject: while down\n\n.dot stays\nbody\n"
    r = sendmail(conf, ["-i", "-f", "app@example.test", "-N", "never",
                        "a@example.net", "b@example.net"], body)
    assert r.returncode == EX_OK, r.stderr
    assert len(maildrop_files(conf)) == 1
    q = subprocess.run([SENDMAIL, "-C", conf.config_path, "-bp"],
                       capture_output=True, env=ternlib.daemon_env())
    assert b"1 message in the maildrop" in q.stdout or q.returncode != 0
    # tern starts: pickup feeds cleanup, the file goes only after the 250.
    d = double()
    p = run_pickup(conf)
    try:
        wait_for(lambda: d.messages, timeout=10, what="the picked-up message")
        wait_for(lambda: not maildrop_files(conf), what="the file removed")
    finally:
        stop(p)
    m = d.messages[0]
    assert m["socket"] == "private" and m["source"] == 3
    assert m["auth_user"] == f"uid={os.getuid()} user={'root' if IS_ROOT else os.getlogin()}" \
        or m["auth_user"].startswith(f"uid={os.getuid()} ")
    assert m["sender"] == "app@example.test"
    assert m["rcpts"] == ["a@example.net", "b@example.net"]
    assert m["notify"] == [0x08, 0x08]
    assert "\r\n.dot stays\r\nbody\r\n" in m["content"]
    assert f"queued as {m['qid']}" in pickup_log(conf) or m["qid"] in pickup_log(conf)


def test_pickup_keeps_files_until_cleanup_accepts(conf, double):
    p = run_pickup(conf)
    wait_for(lambda: os.path.isdir(os.path.join(conf.queue_dir, "maildrop")))
    try:
        r = sendmail(conf, ["to@example.net"], b"Subject: x\n\nbody\n")
        assert r.returncode == EX_OK, r.stderr
        # No cleanup yet: the file waits.
        ternlib.wait_for(lambda: "cannot reach cleanup" in pickup_log(conf))
        assert len(maildrop_files(conf)) == 1
        d = double(end_reply=lambda t: "451 4.3.0 try later")
        wait_for(lambda: "will retry" in pickup_log(conf), what="a retry")
        assert len(maildrop_files(conf)) == 1 and d.messages == []
        d.end_reply = None
        wait_for(lambda: d.messages, what="the message after the retry")
        wait_for(lambda: not maildrop_files(conf), what="the file removed")
    finally:
        stop(p)


def test_corrupt_maildrop_file_is_kept_for_the_operator(conf, double):
    d = double()
    p = run_pickup(conf)
    try:
        md = os.path.join(conf.queue_dir, "maildrop")
        wait_for(lambda: os.path.isdir(md))
        with open(os.path.join(md, "0000000001.00001.00000001"), "wb") as f:
            f.write(b"TERN-MAILDROP 1\nS a@b\nR\nL 5\n\nhello")
        bad = os.path.join(conf.queue_dir, "maildrop.bad", "0000000001.00001.00000001")
        wait_for(lambda: os.path.exists(bad), what="the file moved aside")
        assert "moved to" in pickup_log(conf)
        assert d.messages == []
    finally:
        stop(p)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to make a setgid binary")
def test_setgid_maildrop_lets_a_user_queue_while_down(conf, double):
    """The install design: sendmail setgid tern-drop, maildrop 1770
    owned by tern:tern-drop; a plain user drops, pickup takes it."""
    if subprocess.run(["getent", "group", "tern-drop"]).returncode != 0:
        subprocess.run(["groupadd", "--system", "tern-drop"], check=True)
    p = run_pickup(conf)
    md = os.path.join(conf.queue_dir, "maildrop")
    wait_for(lambda: os.path.isdir(md) and os.stat(md).st_mode & 0o7777 == 0o1770)
    stop(p)
    st = os.stat(md)
    assert st.st_gid == grp.getgrnam("tern-drop").gr_gid
    binary = os.path.join(conf.dir, "sendmail")
    shutil.copy(SENDMAIL, binary)
    os.chown(binary, 0, grp.getgrnam("tern-drop").gr_gid)
    os.chmod(binary, 0o2755)
    # A config the user chose loses the group: the maildrop refuses.
    user_conf = os.path.join(conf.dir, "user.conf")
    shutil.copy(conf.config_path, user_conf)
    os.chown(user_conf, 65534, 65534)
    r = sendmail(conf, ["to@example.net"], b"x\n",
                 user="nobody", prog=binary, conf_path=user_conf)
    assert r.returncode == EX_TEMPFAIL, r.stderr
    assert b"maildrop" in r.stderr
    # root's config keeps it: the file lands, owned by the user.
    r = sendmail(conf, ["-f", "me@example.test", "to@example.net"],
                 b"Subject: setgid\n\nhi\n", user="nobody", prog=binary)
    assert r.returncode == EX_OK, r.stderr
    files = maildrop_files(conf)
    assert len(files) == 1
    st = os.stat(os.path.join(md, files[0]))
    assert st.st_uid == 65534
    d = double()
    p = run_pickup(conf)
    try:
        wait_for(lambda: d.messages, what="the picked-up message")
        wait_for(lambda: not maildrop_files(conf), what="the file removed")
    finally:
        stop(p)
    assert d.messages[0]["auth_user"] == "uid=65534 user=nobody"


def test_ternd_runs_pickup_and_the_maildrop_drains_after_start(tern):
    """Mail dropped while tern is down is picked up by tern-pickup and
    queued by the real tern-cleanup once ternd starts."""
    t = tern({"domain example.test": {}})
    t.listen("submission", "submission")
    os.chmod(t.dir, 0o755)
    t.start()
    md = os.path.join(t.queue_dir, "maildrop")
    wait_for(lambda: os.path.isdir(md), what="tern-pickup to make the maildrop")
    assert t.stop() == 0
    os.chmod(t.config_path, 0o644)
    r = sendmail(t, ["-oi", "-f", "cron@example.test", "ops@example.net"],
                 b"Subject: cron output\n\n.hidden\nok\n")
    assert r.returncode == EX_OK, r.stderr
    assert len(maildrop_files(t)) == 1
    t.start()
    wait_for(lambda: not maildrop_files(t), what="the maildrop file removed")
    t.wait_log(r"maildrop \S+, uid=\d+ user=\S+, from=<cron@example.test>, nrcpt=1")
    t.wait_log(r"from=<cron@example.test>, size=\d+, nrcpt=1 \(queue active\)")
    wait_for(lambda: "ops@example.net" in t.ternctl("queue").stdout or
             "ops@example.net" in t.ternctl("events").stdout,
             what="the message in the queue")


def bs_session(conf, lines, user=None):
    data = "".join(l + "\r\n" for l in lines).encode()
    r = sendmail(conf, ["-bs"], data, user=user)
    assert r.returncode == EX_OK, r.stderr
    return [l for l in r.stdout.decode().split("\r\n") if l]


def test_bs_relays_each_command_to_cleanup(conf, double):
    d = double(rcpt_reply=lambda a: "550 5.1.1 suppressed" if a.startswith("sup") else None)
    out = bs_session(conf, [
        "EHLO client", "MAIL FROM:<app@example.test> BODY=8BITMIME",
        "RCPT TO:<ok@example.net>", "RCPT TO:<sup@example.net>",
        "RCPT TO:<bad address>", "DATA", "Subject: bs", "", "..dot", "body", ".",
        "MAIL FROM:<>", "RCPT TO:<second@example.net>", "RSET",
        "DATA", "BOGUS", "QUIT"], user="nobody" if IS_ROOT else None)
    assert out[0].startswith("220 mail.tern.test ESMTP")
    codes = [l[:3] for l in out if not l.startswith("250-")]
    assert codes == ["220", "250", "250", "250", "550", "501", "354", "250",
                     "250", "250", "250", "503", "502", "221"], out
    assert "550 5.1.1 suppressed" in out
    assert any(l.startswith("250 2.0.0 Ok: queued as ") for l in out)
    assert len(d.messages) == 1
    m = d.messages[0]
    assert m["rcpts"] == ["ok@example.net"]
    assert m["body"] == 1
    assert m["content"] == "Subject: bs\r\n\r\n.dot\r\nbody\r\n"
    if IS_ROOT:
        assert m["peer_uid"] == 65534


def test_bs_with_tern_down_uses_the_maildrop(conf, double):
    p = run_pickup(conf)
    wait_for(lambda: os.path.isdir(os.path.join(conf.queue_dir, "maildrop")))
    stop(p)
    out = bs_session(conf, ["HELO x", "MAIL FROM:<a@example.test>",
                            "RCPT TO:<b@example.net>", "DATA", "Subject: down",
                            "", "hi", ".", "QUIT"])
    assert any("kept in the maildrop" in l for l in out), out
    assert len(maildrop_files(conf)) == 1
    d = double()
    p = run_pickup(conf)
    try:
        wait_for(lambda: d.messages, what="the -bs message after start")
    finally:
        stop(p)
    assert d.messages[0]["rcpts"] == ["b@example.net"]
    assert d.messages[0]["content"] == "Subject: down\r\n\r\nhi\r\n"


def test_bs_refuses_nul_and_needs_helo(conf, double):
    d = double()
    data = (b"MAIL FROM:<a@example.test>\r\nHELO x\r\nMAIL FROM:<a@example.test>\r\n"
            b"RCPT TO:<b@example.net>\r\nDATA\r\nx\0y\r\n.\r\nQUIT\r\n")
    r = sendmail(conf, ["-bs"], data)
    out = r.stdout.decode()
    assert "503 5.5.1" in out
    assert "554 5.6.0" in out
    assert d.messages == []


def test_cleanup_dying_before_the_commit_falls_back_to_the_maildrop(conf, double):
    p = run_pickup(conf)
    wait_for(lambda: os.path.isdir(os.path.join(conf.queue_dir, "maildrop")))
    stop(p)
    d = double(end_reply=lambda t: "DROP")
    r = sendmail(conf, ["to@example.net"], b"Subject: crash\n\nbody\n")
    assert r.returncode == EX_OK, r.stderr
    assert d.messages == []
    assert len(maildrop_files(conf)) == 1
    d.end_reply = None
    p = run_pickup(conf)
    try:
        wait_for(lambda: d.messages, what="the message after the crash")
        wait_for(lambda: not maildrop_files(conf), what="the file removed")
    finally:
        stop(p)
    assert d.messages[0]["rcpts"] == ["to@example.net"]


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become another user")
def test_user_without_access_to_keys_can_still_send(conf, double):
    """The config names a DKIM key in a directory users cannot enter:
    sendmail reads the config without checking files it never uses."""
    keys = os.path.join(conf.dir, "dkim")
    os.makedirs(keys, mode=0o700)
    with open(os.path.join(keys, "k.pem"), "w") as f:
        f.write("not a real key\n")
    conf.sections["domain example.test"] = {
        "dkim_selector": "s1", "dkim_key": os.path.join(keys, "k.pem")}
    conf.write_config()
    os.chmod(conf.config_path, 0o644)
    d = double()
    r = sendmail(conf, ["to@example.net"], b"Subject: x\n\nhi\n", user="nobody")
    assert r.returncode == EX_OK, r.stderr
    assert len(d.messages) == 1


# ---- the real tern-cleanup on run_dir/public/sendmail, run by ternd ----

CLIENT = os.path.join(BUILD_DIR, "tests/tools/cleanup_client")


def start_tern(tern, **sections):
    """ternd with the real daemons. The hostname is no [domain]: a local
    user's default sender (user@hostname) is accepted all the same."""
    from test_cleanup import _queue_ready
    t = tern({"domain example.test": {}, **sections})
    os.chmod(t.dir, 0o755)
    t.start()
    md = os.path.join(t.queue_dir, "maildrop")
    wait_for(lambda: os.path.isdir(md), what="tern-pickup to make the maildrop")
    wait_for(lambda: _queue_ready(t.queue_dir), what="the queue")
    os.chmod(t.config_path, 0o644)
    return t


def queued(t):
    """The messages in t's LMDB queue, read independently (SCHEMA.md)."""
    from test_cleanup import read_queue
    return read_queue(t.queue_dir)[0]


def as_user(cmd, user):
    pw = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
            "--clear-groups", *cmd]


def connect_as(path, user):
    """connect() to a Unix socket as user: "ok" or the errno name."""
    code = ("import socket,sys,errno\n"
            "s=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1]); print('ok')\n"
            "except OSError as e: print(errno.errorcode[e.errno])\n")
    r = subprocess.run(as_user(["/usr/bin/python3", "-c", code, path], user),
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become another user")
def test_public_socket_mode_owner_and_private_stays_private(tern):
    t = start_tern(tern)
    pub = os.path.join(t.run_dir, "public")
    sock = os.path.join(pub, "sendmail")
    st = os.lstat(pub)
    assert st.st_mode & 0o7777 == 0o755 and st.st_uid == 0
    st = os.lstat(sock)
    import stat
    assert stat.S_ISSOCK(st.st_mode)
    assert st.st_mode & 0o777 == 0o666 and st.st_uid == 0
    priv = os.path.join(t.run_dir, "private")
    assert os.stat(priv).st_mode & 0o777 == 0o700
    assert connect_as(sock, "nobody") == "ok"
    assert connect_as(os.path.join(priv, "cleanup"), "nobody") == "EACCES"
    assert t.stop() == 0
    # Stopped: the socket is gone, sendmail will use the maildrop.
    assert not os.path.exists(sock)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become another user")
def test_user_sendmail_is_queued_through_the_socket_before_exit(tern):
    t = start_tern(tern)
    before = set(queued(t))
    r = sendmail(t, ["-t", "-i"],
                 b"To: Someone <to@example.net>\nSubject: via socket\n\n"
                 b".dot\nhello\n", user="nobody")
    assert r.returncode == EX_OK, r.stderr
    # Queued when sendmail returned: not in the maildrop, in the queue.
    assert maildrop_files(t) == []
    new = {q: m for q, m in queued(t).items() if q not in before}
    assert len(new) == 1, new
    qid, m = next(iter(new.items()))
    assert m["msg"]["source"] == 3
    assert m["msg"]["auth_user"] == "uid=65534 user=nobody"
    assert m["msg"]["client_addr"] == ""
    assert m["msg"]["sender"] == "nobody@mail.tern.test"
    assert [x["address"] for x in m["rcpts"]] == ["to@example.net"]
    c = m["content"]
    assert c.startswith(b"Received: by mail.tern.test (tern, from userid 65534)")
    assert b"\r\n.dot\r\nhello\r\n" in c
    assert b"\r\nFrom: nobody@mail.tern.test" in c or b"<nobody@mail.tern.test>" in c
    t.wait_log(rf"{qid}: listener=sendmail, uid=65534 user=nobody, "
               r"from=<nobody@mail\.tern\.test>")
    # Not through pickup, and the user's own sender is not flagged.
    assert not [l for l in t.log_text().splitlines()
                if qid in l and ("maildrop" in l or "sender=" in l)]


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become another user")
def test_forged_begin_on_the_public_socket_is_overridden(tern):
    """A local user who speaks the protocol itself and claims to be
    smtpd on a trusted network with TLS and an authenticated user is
    recorded as what the kernel says: a local submission of uid 65534."""
    t = start_tern(tern)
    before = set(queued(t))
    path = os.path.join(t.dir, "forged.eml")
    with open(path, "wb") as f:
        # No From: a submission (source 1) would be refused for that.
        f.write(b"Subject: forged\r\n\r\nbody\r\n")
    os.chmod(path, 0o644)
    r = subprocess.run(as_user(
        [CLIENT, "-s", "1", "-L", "submission", "-T", "-a", "ceo",
         "-t", "TLSv1.3 TLS_AES_256_GCM_SHA384", "-c", "trusted.example.test",
         "-i", "192.0.2.1", "-H", "trusted.example.test",
         "-f", "ceo@example.test", "-r", "victim@example.net",
         os.path.join(t.run_dir, "public", "sendmail"), path], "nobody"),
        capture_output=True, text=True, env=ternlib.daemon_env(), timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "END 250 2.0.0 Ok: queued as" in r.stdout
    new = {q: m for q, m in queued(t).items() if q not in before}
    assert len(new) == 1
    qid, m = next(iter(new.items()))
    assert m["msg"]["source"] == 3
    assert m["msg"]["auth_user"] == "uid=65534 user=nobody"
    assert m["msg"]["client_addr"] == ""
    assert m["msg"]["client_name"] == "localhost"
    head = m["content"].split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"Received: by mail.tern.test (tern, from userid 65534)")
    for claimed in (b"ceo\r", b"Authenticated", b"192.0.2.1", b"TLS", b"ESMTP",
                    b"trusted.example.test"):
        assert claimed not in head, (claimed, head)
    assert b"\r\nFrom: ceo@example.test\r\n" in head + b"\r\n"
    t.wait_log(rf"{qid}: listener=sendmail, uid=65534 user=nobody, "
               r"from=<ceo@example\.test>")
    t.wait_log(rf"{qid}: sender=<ceo@example\.test> set by uid=65534 user=nobody")


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become another user")
def test_refusals_over_the_socket_give_sysexits_and_no_maildrop(tern):
    t = start_tern(tern)
    r = t.ternctl("suppression", "add", "gone@example.net", "asked us")
    assert r.returncode == 0, r.stderr
    before = set(queued(t))
    # Every recipient refused (suppressed): EX_NOUSER, cleanup's words.
    r = sendmail(t, ["gone@example.net"], b"Subject: x\n\nhi\n", user="nobody")
    assert r.returncode == EX_NOUSER, r.stderr
    assert b"550 5.7.1" in r.stderr and b"suppression list" in r.stderr
    # One of two refused: the other is queued, exit 0, the refusal shown.
    r = sendmail(t, ["gone@example.net", "ok@example.net"],
                 b"Subject: x\n\nhi\n", user="nobody")
    assert r.returncode == EX_OK, r.stderr
    assert b"<gone@example.net>: 550 5.7.1" in r.stderr
    # A sender that is no sending domain of this server: EX_NOPERM.
    r = sendmail(t, ["-f", "someone@elsewhere.test", "ok@example.net"],
                 b"Subject: x\n\nhi\n", user="nobody")
    assert r.returncode == EX_NOPERM, r.stderr
    assert b"553 5.7.1" in r.stderr
    # Content cleanup refuses (two From fields): EX_DATAERR.
    r = sendmail(t, ["ok@example.net"],
                 b"From: a@example.test\nFrom: b@example.test\n\nhi\n",
                 user="nobody")
    assert r.returncode == EX_DATAERR, r.stderr
    assert b"550 5.6.0" in r.stderr
    new = {q: m for q, m in queued(t).items() if q not in before}
    assert [[x["address"] for x in m["rcpts"]] for m in new.values()] == \
        [["ok@example.net"]]
    # A refusal is tern's answer, never a reason to use the maildrop.
    assert maildrop_files(t) == []
    t.wait_log(r"NOQUEUE: reject: RCPT from local \(uid=65534 user=nobody\): "
               r"550 5\.7\.1")
    t.wait_log(r"NOQUEUE: reject: MAIL from local \(uid=65534 user=nobody\): 553")


def test_socket_survives_reload_and_closes_at_stop(tern):
    t = start_tern(tern)
    sock = os.path.join(t.run_dir, "public", "sendmail")
    ino = os.stat(sock).st_ino
    import signal
    t.proc.send_signal(signal.SIGHUP)
    t.wait_log(r"reload complete")
    assert os.stat(sock).st_ino == ino
    r = sendmail(t, ["-f", "app@example.test", "to@example.net"],
                 b"Subject: after reload\n\nhi\n")
    assert r.returncode == EX_OK, r.stderr
    assert maildrop_files(t) == []
    t.wait_log(r"listener=sendmail, uid=0 user=root, from=<app@example\.test>"
               if IS_ROOT else r"listener=sendmail, uid=\d+ ")
    assert t.stop() == 0
    r = sendmail(t, ["-f", "app@example.test", "to@example.net"],
                 b"Subject: while down\n\nhi\n")
    assert r.returncode == EX_OK, r.stderr
    assert len(maildrop_files(t)) == 1


def test_nobody_accepting_on_the_socket_means_the_maildrop(tern):
    """ternd holds the socket but tern-cleanup is not accepting (down,
    throttled): connect() succeeds, HELLO never comes. sendmail waits
    a bounded time, then keeps the message in the maildrop."""
    t = tern({"domain example.test": {}})
    os.chmod(t.dir, 0o755)
    ternlib.idle_daemons(t, ["cleanup"])
    t.start()
    md = os.path.join(t.queue_dir, "maildrop")
    wait_for(lambda: os.path.isdir(md), what="tern-pickup to make the maildrop")
    sock = os.path.join(t.run_dir, "public", "sendmail")
    wait_for(lambda: os.path.exists(sock), what="the public socket")
    os.chmod(t.config_path, 0o644)
    started = time.monotonic()
    r = sendmail(t, ["-f", "app@example.test", "to@example.net"],
                 b"Subject: nobody home\n\nhi\n")
    took = time.monotonic() - started
    assert r.returncode == EX_OK, r.stderr
    assert len(maildrop_files(t)) == 1
    assert 10 < took < 40, took


def test_cleanup_going_down_at_begin_means_the_maildrop(conf, double):
    """421 to BEGIN: cleanup is draining and took nothing; the message
    is kept for pickup rather than refused (tern is restarting)."""
    p = run_pickup(conf)
    wait_for(lambda: os.path.isdir(os.path.join(conf.queue_dir, "maildrop")))
    stop(p)
    d = double(begin_reply=lambda t: "421 4.3.2 Service shutting down")
    r = sendmail(conf, ["to@example.net"], b"Subject: draining\n\nbody\n")
    assert r.returncode == EX_OK, r.stderr
    assert d.messages == []
    assert len(maildrop_files(conf)) == 1
    # Any other temporary refusal is tern's answer: EX_TEMPFAIL, no file.
    d.begin_reply = lambda t: "451 4.3.0 try later"
    r = sendmail(conf, ["to@example.net"], b"Subject: later\n\nbody\n")
    assert r.returncode == EX_TEMPFAIL, r.stderr
    assert len(maildrop_files(conf)) == 1


def test_bs_cleanup_going_down_at_mail_means_the_maildrop(conf, double):
    p = run_pickup(conf)
    wait_for(lambda: os.path.isdir(os.path.join(conf.queue_dir, "maildrop")))
    stop(p)
    d = double(begin_reply=lambda t: "421 4.3.2 Service shutting down")
    out = bs_session(conf, ["HELO x", "MAIL FROM:<a@example.test>",
                            "RCPT TO:<b@example.net>", "DATA", "Subject: x",
                            "", "hi", ".", "QUIT"])
    assert any("kept in the maildrop" in l for l in out), out
    assert not any(l.startswith("421") for l in out), out
    assert d.messages == [] and len(maildrop_files(conf)) == 1


def test_a_local_client_gets_one_transaction_and_few_connections(tern):
    """What one local user can make tern-cleanup hold is bounded: one
    transaction per connection, 256 connections on the sendmail socket."""
    from test_cleanup import Raw
    t = start_tern(tern)
    sock = os.path.join(t.run_dir, "public", "sendmail")
    c = Raw(sock)
    c.begin(1)
    assert c.reply()[1] == 250
    c.begin(2)
    r = c.reply()
    assert r[:2] == (2, 452) and "One transaction at a time" in r[3], r
    # The first goes on; after it ends another may begin.
    c.rcpt(1, "to@example.net")
    assert c.reply()[1] == 250
    c.data(1, b"Subject: one\r\n\r\nhi\r\n")
    c.send(0x0104, 1)
    r = c.reply()
    assert r[1] == 250 and r[4], r
    c.begin(3)
    assert c.reply()[1] == 250
    conns = [Raw(sock) for _ in range(255)]
    assert not _hello_ok(sock)
    t.wait_log(r"sendmail socket: 256 local connections already")
    for x in conns:
        x.s.close()
    c.s.close()
    # Closed ones are counted out: a new client is served again.
    wait_for(lambda: _hello_ok(sock), what="a new connection served")


def test_an_idle_local_connection_is_closed(tern):
    """A connection left open on the sendmail socket holds one of the 256
    slots: after [smtpd] timeout of silence from the client it is closed;
    one that keeps talking is not."""
    from test_cleanup import Raw
    t = start_tern(tern, smtpd={"timeout": "2s"})
    sock = os.path.join(t.run_dir, "public", "sendmail")
    idle, busy = Raw(sock), Raw(sock)
    start = time.monotonic()
    busy.begin(1)
    assert busy.reply()[1] == 250
    for i in range(6):		# 3 s of activity, never 2 s of silence
        time.sleep(0.5)
        busy.rcpt(1, f"to{i}@example.net")
        assert busy.reply()[1] == 250
    idle.s.settimeout(10)
    assert idle.s.recv(1) == b""	# closed by cleanup
    assert time.monotonic() - start >= 1.5
    t.wait_log(r"sendmail socket: idle for 2 s \(uid=\d+ user=\S+\)")
    busy.data(1, b"Subject: still here\r\n\r\nhi\r\n")
    busy.send(0x0104, 1)
    r = busy.reply()
    assert r[1] == 250 and r[4], r


def _hello_ok(sock):
    from test_cleanup import Raw
    try:
        Raw(sock).s.close()
        return True
    except (AssertionError, OSError, TypeError):
        return False


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become another user")
def test_bs_through_the_real_cleanup_is_the_users_submission(tern):
    t = start_tern(tern)
    before = set(queued(t))
    out = bs_session(t, ["EHLO pretend.smtpd.example", "MAIL FROM:<app@example.test>",
                         "RCPT TO:<to@example.net>", "DATA", "Subject: bs",
                         "", "hi", ".", "QUIT"], user="nobody")
    assert any(l.startswith("250 2.0.0 Ok: queued as ") for l in out), out
    assert maildrop_files(t) == []
    new = [m for q, m in queued(t).items() if q not in before]
    assert len(new) == 1
    m = new[0]
    assert m["msg"]["source"] == 3
    assert m["msg"]["auth_user"] == "uid=65534 user=nobody"
    assert b"pretend.smtpd" not in m["content"]
    t.wait_log(r"listener=sendmail, uid=65534 user=nobody, from=<app@example\.test>")
    t.wait_log(r"sender=<app@example\.test> set by uid=65534 user=nobody")


def slow_nss(t):
    """Builds the stand-in NSS library (tests/tools/slow_nss.c) that holds
    a user look-up until its gate file exists; returns (library, gate).
    The gates directory is writable for the tern user, which marks it."""
    shim = os.path.join(t.dir, "slow_nss.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", shim,
                    os.path.join(ternlib.SRC_DIR, "tests/tools/slow_nss.c"),
                    "-ldl"], check=True)
    gates = os.path.join(t.dir, "gates")
    os.mkdir(gates)
    os.chmod(gates, 0o777)
    return shim, os.path.join(gates, "nss-gate")


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become another user")
def test_a_slow_user_name_look_up_does_not_stall_other_submissions(tern):
    """tern-cleanup names a local user with getpwuid_r, which may wait on
    a directory service. While that look-up hangs (a stand-in library
    holds it until the test opens a gate), a daemon's submission on
    private/cleanup is still answered; then the user's message is queued
    under the right name."""
    t = tern({"domain example.test": {}})
    shim, gate = slow_nss(t)
    env = ternlib.daemon_env()
    from test_cleanup import _queue_ready
    os.chmod(t.dir, 0o755)
    t.start(extra_env={
        "LD_PRELOAD": shim, "SLOW_NSS_GATE": gate,
        # the stand-in comes before the sanitizer runtime
        "ASAN_OPTIONS": env["ASAN_OPTIONS"] + ":verify_asan_link_order=0"})
    wait_for(lambda: _queue_ready(t.queue_dir), what="the queue")
    os.chmod(t.config_path, 0o644)
    user = subprocess.Popen(
        as_user([SENDMAIL, "-C", t.config_path, "-i", "to@example.net"],
                "nobody"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env)
    try:
        user.stdin.write(b"Subject: slow directory\n\nhello\n")
        user.stdin.close()
        wait_for(lambda: os.path.exists(gate + ".waiting") or
                 user.poll() is not None, 30,
                 what="tern-cleanup's look-up to hang")
        assert user.poll() is None, user.stderr.read()
        msg = os.path.join(t.dir, "daemon.eml")
        with open(msg, "wb") as f:
            f.write(b"From: app@example.test\r\nTo: a@dest.test\r\n"
                    b"Subject: from a daemon\r\n\r\nnot held up\r\n")
        r = subprocess.run([CLIENT, "-f", "app@example.test", "-r",
                            "a@dest.test",
                            os.path.join(t.run_dir, "private", "cleanup"), msg],
                           capture_output=True, timeout=20, env=env)
        assert r.returncode == 0, r.stderr
        assert b"250" in r.stdout, r.stdout
        assert user.poll() is None, "sendmail finished before the gate opened"
    finally:
        open(gate, "w").close()
    assert user.wait(30) == EX_OK, user.stderr.read()
    t.wait_log(r"listener=sendmail, uid=65534 user=nobody, "
               r"from=<nobody@mail\.tern\.test>")


@pytest.mark.skipif(not IS_ROOT, reason="needs root to own files as another user")
def test_a_slow_owner_look_up_does_not_stall_the_maildrop(tern):
    """tern-pickup names each maildrop file's owner with getpwuid_r, which
    may wait on a directory service. While the look-up of one owner hangs
    (a stand-in library holds it for uid 65534 until the test opens a
    gate), another user's file is picked up and queued; then the first
    one is, under the right name."""
    t = tern({"domain example.test": {}})
    t.listen("submission", "submission")
    os.chmod(t.dir, 0o755)
    t.start()
    md = os.path.join(t.queue_dir, "maildrop")
    wait_for(lambda: os.path.isdir(md), what="tern-pickup to make the maildrop")
    assert t.stop() == 0
    os.chmod(t.config_path, 0o644)
    for sender in ("slow@example.test", "quick@example.test"):
        r = sendmail(t, ["-oi", "-f", sender, "ops@example.net"],
                     b"Subject: dropped\n\nbody\n")
        assert r.returncode == EX_OK, r.stderr
    files = sorted(maildrop_files(t))
    assert len(files) == 2
    # The oldest file (picked up first) is nobody's: its look-up hangs.
    slow = [f for f in files
            if b"slow@example.test" in open(os.path.join(md, f), "rb").read()]
    assert slow == files[:1], files
    os.chown(os.path.join(md, slow[0]), 65534, 65534)

    shim, gate = slow_nss(t)
    env = ternlib.daemon_env()
    try:
        t.start(extra_env={
            "LD_PRELOAD": shim, "SLOW_NSS_GATE": gate, "SLOW_NSS_UID": "65534",
            "ASAN_OPTIONS": env["ASAN_OPTIONS"] + ":verify_asan_link_order=0"})
        wait_for(lambda: os.path.exists(gate + ".waiting"), 30,
                 what="tern-pickup's look-up of uid 65534 to hang")
        t.wait_log(r"maildrop \S+, uid=0 user=root, from=<quick@example\.test>, "
                   r"nrcpt=1", timeout=15)
        assert maildrop_files(t) == slow
        assert "from=<slow@example.test>" not in t.log_text()
        # Nor does the hung look-up hold up a stop (ternd starts another).
        old = t.pids_of("pickup")[0]
        os.kill(old, signal.SIGTERM)
        wait_for(lambda: old not in t.pids_of("pickup"), timeout=3,
                 what="tern-pickup to exit")
        # It drained and exited by itself (ternd kills nothing here).
        t.wait_log(rf"process tern-pickup pid {old} exit status 0\b")
        assert maildrop_files(t) == slow
    finally:
        open(gate, "w").close()
    t.wait_log(rf"maildrop {slow[0]}, uid=65534 user=nobody, "
               r"from=<slow@example\.test>, nrcpt=1", timeout=15)
    wait_for(lambda: not maildrop_files(t), what="the maildrop emptied")
    assert t.stop() == 0
