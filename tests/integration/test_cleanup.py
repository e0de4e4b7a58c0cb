"""tern-cleanup run by ternd from the build tree, driven over its Unix
socket by tests/tools/cleanup_client (a small client of the CLEANUP
conversation in ipc.h). What it committed is read straight from the LMDB
queue with python3-lmdb, decoding the records as queue/SCHEMA.md
describes them: an independent reader of the on-disk format."""
import os
import re
import struct
import subprocess
import time

import lmdb
import pytest

import ternlib

CLIENT = os.path.join(ternlib.BUILD_DIR, "tests/tools/cleanup_client")


# ---- reading the queue (SCHEMA.md) ----

def _strs(buf, pos, n):
    out = []
    for _ in range(n):
        (ln,) = struct.unpack_from(">H", buf, pos)
        pos += 2
        raw = bytes(buf[pos:pos + ln])
        assert raw.endswith(b"\0")
        out.append(raw[:-1].decode("utf-8"))
        pos += ln
    assert pos == len(buf), "bytes left over in a record"
    return out


def read_queue(queue_dir):
    """{qid text: {"msg": {...}, "rcpts": [...], "content": bytes}} and the
    event list."""
    env = lmdb.open(queue_dir, readonly=True, max_dbs=20, lock=True,
                    subdir=True)
    msgs, events = {}, []
    try:
        with env.begin() as txn:
            dbs = {n: env.open_db(n.encode(), txn=txn, create=False)
                   for n in ("messages", "content", "recipients", "events")}
            for k, v in txn.cursor(dbs["messages"]):
                qid = "%016X" % struct.unpack(">Q", k)[0]
                (ver, arrival, size, n_chunks, body, source, ret, flags,
                 n_rcpt, n_del, n_fail, n_dsn) = struct.unpack_from(
                    ">BqQIBBBBIIII", v, 0)
                assert ver == 1
                s = _strs(v, struct.calcsize(">BqQIBBBBIIII"), 7)
                msgs[qid] = {"msg": dict(
                    size=size, n_chunks=n_chunks, body=body, source=source,
                    ret=ret, smtputf8=bool(flags & 1), n_rcpt=n_rcpt,
                    sender=s[0], envid=s[1], auth_user=s[2], client_addr=s[3],
                    client_name=s[4], stream=s[5], message_id=s[6]),
                    "rcpts": [], "content": b""}
            for k, v in txn.cursor(dbs["content"]):
                qid = "%016X" % struct.unpack(">Q", k[:8])[0]
                assert v[0] == 1
                msgs[qid]["content"] += bytes(v[1:])
            for k, v in txn.cursor(dbs["recipients"]):
                qid = "%016X" % struct.unpack(">Q", k[:8])[0]
                hdr = ">BBBBIqqqH"
                ver, state, flags, notify = struct.unpack_from(">BBBB", v, 0)
                s = _strs(v, struct.calcsize(hdr), 6)
                msgs[qid]["rcpts"].append(dict(
                    state=state, notify=notify, address=s[0], orcpt=s[1]))
            for k, v in txn.cursor(dbs["events"]):
                hdr = ">BqBQIIH"
                ver, t, typ, qid, idx, att, code = struct.unpack_from(hdr, v, 0)
                s = _strs(v, struct.calcsize(hdr), 5)
                events.append(dict(type=typ, qid=qid, recipient=s[0],
                                   code=code, status=s[1], text=s[2]))
    finally:
        env.close()
    return msgs, events


# ---- running ----

def start(tern, queue_dir=None, **server):
    sections = {"domain example.test": {}, "domain other.test": {}}
    t = tern(sections=sections)
    t.sections["server"].update(server)
    if queue_dir is not None:
        t.sections["server"]["queue_dir"] = queue_dir
        t.queue_dir = queue_dir
    t.start()
    sock = os.path.join(t.run_dir, "private", "cleanup")
    ternlib.wait_for(lambda: _connectable(sock), 10, what="cleanup socket")
    t.cleanup_sock = sock
    ternlib.wait_for(lambda: _queue_ready(t.queue_dir), 10,
                     what="tern-cleanup to create the queue")
    return t


def _queue_ready(queue_dir):
    """True once a writer created the queue's databases."""
    try:
        env = lmdb.open(queue_dir, readonly=True, max_dbs=20, lock=True)
    except lmdb.Error:
        return False
    try:
        with env.begin() as txn:
            env.open_db(b"suppression", txn=txn, create=False)
        return True
    except lmdb.Error:
        return False
    finally:
        env.close()


def _connectable(path):
    import socket
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
        return True
    except OSError:
        return False


def submit(t, message, sender="app@example.test", rcpts=("a@dest.test",),
           args=(), name="msg.eml"):
    path = os.path.join(t.dir, name)
    with open(path, "wb") as f:
        f.write(message)
    cmd = [CLIENT, "-f", sender]
    for r in rcpts:
        cmd += ["-r", r]
    cmd += list(args) + [t.cleanup_sock, path]
    r = subprocess.run(cmd, capture_output=True, timeout=60,
                       env=ternlib.daemon_env())
    assert r.returncode in (0, 1), r.stderr.decode()
    return r.stdout.decode("utf-8").splitlines()


def end_line(lines):
    ends = [l for l in lines if l.startswith("END ")]
    assert len(ends) == 1, lines
    return ends[0]


def queued_id(lines):
    m = re.match(r"END 250 2\.0\.0 Ok: queued as ([0-9A-F]{16}) qid=\1$",
                 end_line(lines))
    assert m, lines
    return m.group(1)


def headers_of(content):
    head = content.split(b"\r\n\r\n", 1)[0]
    return re.split(rb"\r\n(?![ \t])", head)


def assert_crlf_only(content):
    assert re.search(rb"\r(?!\n)", content) is None, "bare CR"
    assert re.search(rb"(?<!\r)\n", content) is None, "bare LF"


# ---- tests ----

def test_fixups_and_durable_commit(tern):
    t = start(tern)
    msg = (b"From: App <app@example.test>\r\n"
           b"To: a@dest.test\r\n"
           b"Bcc: hidden@dest.test\r\n"
           b"Subject: folded\r\n"
           b"  subject continues\r\n"
           b"\r\n"
           b"line one\nline two\rline three\r\n"
           b"no final newline")
    lines = submit(t, msg, rcpts=("a@dest.test",
                                  "b@dest.test;rfc822;B@dest.test;3"),
                   args=["-a", "alice", "-t", "TLSv1.3 TLS_AES_256_GCM_SHA384",
                         "-e", "env-1", "-R", "2", "-H", "client.example"])
    qid = queued_id(lines)
    # The queue id is given at BEGIN already (tern-smtpd logs it first).
    assert lines[:3] == [f"BEGIN 250 2.1.0 Ok provisional={qid}",
                         "RCPT <a@dest.test> 250 2.1.5 Ok",
                         "RCPT <b@dest.test> 250 2.1.5 Ok"]
    msgs, events = read_queue(t.queue_dir)
    assert list(msgs) == [qid]
    m = msgs[qid]
    content = m["content"]
    assert m["msg"]["size"] == len(content)
    assert m["msg"]["sender"] == "app@example.test"
    assert m["msg"]["envid"] == "env-1" and m["msg"]["ret"] == 2
    assert m["msg"]["auth_user"] == "alice"
    assert m["msg"]["source"] == 1
    assert [(r["address"], r["orcpt"], r["notify"]) for r in m["rcpts"]] == [
        ("a@dest.test", "", 0), ("b@dest.test", "rfc822;B@dest.test", 3)]
    # queued, once per recipient; tern-qmgr may have tried a delivery
    # already (later events) on a slow machine
    types = [e["type"] for e in events if e["qid"]]
    assert types[:2] == [1, 1] and types.count(1) == 2, types

    assert_crlf_only(content)
    hdrs = headers_of(content)
    assert hdrs[0].startswith(b"Received: from client.example (client.test "
                              b"[127.0.0.1])")
    assert b"(Authenticated sender: alice)" in hdrs[0]
    assert b"(using TLSv1.3 TLS_AES_256_GCM_SHA384)" in hdrs[0]
    assert b"with ESMTPSA id " + qid.encode() in hdrs[0]
    assert all(len(l) <= 998 for l in content.split(b"\r\n"))
    names = [h.split(b":", 1)[0].lower() for h in hdrs]
    assert b"bcc" not in names
    assert names.count(b"message-id") == 1 and names.count(b"date") == 1
    mid = [h for h in hdrs if h.lower().startswith(b"message-id:")][0]
    assert re.match(rb"Message-ID: <[^@<>\s]+@mail\.tern\.test>$", mid)
    assert m["msg"]["message_id"] == mid.split(b" ", 1)[1].decode()
    date = [h for h in hdrs if h.lower().startswith(b"date:")][0]
    from email.utils import parsedate_to_datetime
    assert abs(parsedate_to_datetime(date[6:].decode()).timestamp()
               - time.time()) < 60
    assert b"Subject: folded\r\n  subject continues" in content
    assert content.endswith(b"\r\n\r\nline one\r\nline two\r\nline three\r\n"
                            b"no final newline\r\n")
    # Postfix-shape log lines.
    t.wait_log(re.escape(qid) + r": message-id=<[^>]+@mail\.tern\.test>")
    t.wait_log(re.escape(qid) + r": from=<app@example\.test>, size=%d, "
               r"nrcpt=2 \(queue active\)" % len(content))


def test_existing_message_id_and_date_are_kept(tern):
    t = start(tern)
    msg = (b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
           b"Message-ID: <keep.me@example.test>\r\n"
           b"From: app@example.test\r\n\r\nhello\r\n")
    qid = queued_id(submit(t, msg))
    m = read_queue(t.queue_dir)[0][qid]
    hdrs = headers_of(m["content"])
    assert hdrs[1:] == [b"Date: Mon, 1 Jan 2024 00:00:00 +0000",
                        b"Message-ID: <keep.me@example.test>",
                        b"From: app@example.test"]
    assert m["msg"]["message_id"] == "<keep.me@example.test>"


def put_suppression(queue_dir, address, reason):
    env = lmdb.open(queue_dir, max_dbs=20, lock=True, subdir=True)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(b"suppression", txn=txn, create=False)
            r = reason.encode() + b"\0"
            val = struct.pack(">BBqqQ", 1, 3, int(time.time() * 1000), 0, 0) + \
                struct.pack(">H", len(r)) + r
            txn.put(address.lower().encode(), val, db=db)
    finally:
        env.close()


def test_suppressed_recipient_is_refused_others_accepted(tern):
    t = start(tern)
    put_suppression(t.queue_dir, "gone@dest.test", "550 5.1.1 no such user")
    msg = b"From: app@example.test\r\nSubject: s\r\n\r\nhi\r\n"
    lines = submit(t, msg, rcpts=("ok@dest.test", "Gone@Dest.Test",
                                  "ok2@dest.test"))
    refused = [l for l in lines if l.startswith("RCPT <Gone@Dest.Test>")][0]
    assert refused.startswith("RCPT <Gone@Dest.Test> 550 5.7.1 ")
    assert "suppression list" in refused
    qid = queued_id(lines)
    msgs, events = read_queue(t.queue_dir)
    assert [r["address"] for r in msgs[qid]["rcpts"]] == ["ok@dest.test",
                                                         "ok2@dest.test"]
    sup = [e for e in events if e["type"] == 6]
    assert len(sup) == 1 and sup[0]["recipient"] == "Gone@Dest.Test"
    assert sup[0]["code"] == 550 and "no such user" in sup[0]["text"]
    t.wait_log(r"reject: RCPT .*550 5\.7\.1 .*to=<Gone@Dest\.Test>")


LONG = b"x" * 999
REFUSALS = [
    # (name, message, client args, sender, step, reply start)
    ("no From", b"Subject: x\r\n\r\nbody\r\n", [], None, "END",
     "END 550 5.6.0 "),
    ("two From", b"From: app@example.test\r\nFrom: b@example.test\r\n\r\nb\r\n",
     [], None, "END", "END 550 5.6.0 "),
    ("loop", b"".join(b"Received: from h%d by h\r\n" % i for i in range(51)) +
     b"From: app@example.test\r\n\r\nb\r\n", [], None, "END", "END 554 5.4.6 "),
    ("long line", b"From: app@example.test\r\n\r\n" + LONG + b"\r\n", [], None,
     "END", "END 550 5.6.0 "),
    ("long header line", b"From: app@example.test\r\nX-Long: " + LONG +
     b"\r\n\r\nb\r\n", [], None, "END", "END 550 5.6.0 "),
    ("8bit without 8BITMIME", b"From: app@example.test\r\n\r\ncaf\xc3\xa9\r\n",
     [], None, "END", "END 550 5.6.0 "),
    ("NUL", b"From: app@example.test\r\n\r\na\0b\r\n", [], None, "END",
     "END 550 5.6.0 "),
    ("too big", b"From: app@example.test\r\n\r\n" + (b"y" * 900 + b"\r\n") * 20,
     [], None, "END", "END 552 5.3.4 "),
    ("declared too big", b"From: app@example.test\r\n\r\nb\r\n",
     ["-z", "999999"], None, "BEGIN", "BEGIN 552 5.3.4 "),
    ("foreign sender", b"From: app@example.test\r\n\r\nb\r\n", [],
     "app@elsewhere.test", "BEGIN", "BEGIN 553 5.7.1 "),
    ("bad sender syntax", b"From: app@example.test\r\n\r\nb\r\n", [],
     "a..b@example.test", "BEGIN", "BEGIN 553 5.1.7 "),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusals(tern, case):
    name, msg, args, sender, step, expect = case
    t = start(tern, message_size_limit="16k")
    lines = submit(t, msg, sender=sender or "app@example.test", args=args)
    got = [l for l in lines if l.startswith(step + " ")]
    assert got and got[0].startswith(expect), lines
    assert read_queue(t.queue_dir)[0] == {}


def test_recipient_syntax_and_no_recipients(tern):
    t = start(tern)
    msg = b"From: app@example.test\r\n\r\nb\r\n"
    lines = submit(t, msg, rcpts=("not an address", "a@-bad-.test"))
    assert lines[1].startswith("RCPT <not an address> 501 5.1.3 ")
    assert lines[2].startswith("RCPT <a@-bad-.test> 501 5.1.3 ")
    assert end_line(lines).startswith("END 554 5.5.1 ")
    assert read_queue(t.queue_dir)[0] == {}


def test_8bit_and_utf8_when_declared(tern):
    t = start(tern)
    msg = "From: app@example.test\r\nSubject: café\r\n\r\ncafé\r\n".encode()
    qid = queued_id(submit(t, msg, args=["-b", "1"]))
    assert read_queue(t.queue_dir)[0][qid]["msg"]["body"] == 1
    # A UTF-8 recipient needs SMTPUTF8.
    lines = submit(t, msg, rcpts=("josé@dest.test",), args=["-b", "1"])
    assert lines[1].startswith("RCPT <josé@dest.test> 501 5.1.3 ")
    lines = submit(t, msg, rcpts=("josé@dest.test",), args=["-U"])
    qid2 = queued_id(lines)
    m = read_queue(t.queue_dir)[0][qid2]
    assert m["msg"]["smtputf8"] and m["rcpts"][0]["address"] == "josé@dest.test"
    assert b"with UTF8SMTP id" in m["content"]


def test_sendmail_source_gets_a_from(tern):
    t = start(tern)
    msg = b"Subject: cron\n\nbare LF body\n"
    qid = queued_id(submit(t, msg, sender="root@example.test",
                           args=["-s", "3", "-i", "", "-c", "", "-a",
                                 "uid=0 user=root"]))
    m = read_queue(t.queue_dir)[0][qid]
    content = m["content"]
    assert_crlf_only(content)
    hdrs = headers_of(content)
    assert hdrs[0].startswith(b"Received: by mail.tern.test (tern, from userid "
                              b"0)\r\n\tid " + qid.encode())
    assert m["msg"]["source"] == 3 and m["msg"]["client_addr"] == ""
    assert b"From: root@example.test" in hdrs
    assert content.endswith(b"\r\n\r\nbare LF body\r\n")


def test_many_messages_share_commits(tern):
    t = start(tern)
    msg = b"From: app@example.test\r\n\r\nb\r\n"
    procs = []
    for i in range(8):
        path = os.path.join(t.dir, "m%d.eml" % i)
        with open(path, "wb") as f:
            f.write(msg)
        procs.append(subprocess.Popen(
            [CLIENT, "-f", "app@example.test", "-r", "x%d@dest.test" % i,
             "-n", "10", t.cleanup_sock, path], stdout=subprocess.PIPE,
            env=ternlib.daemon_env()))
    qids = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        qids += re.findall(r"qid=([0-9A-F]{16})", out.decode())
    assert len(set(qids)) == 80
    assert set(read_queue(t.queue_dir)[0]) == set(qids)


def _fill_until_refused(t):
    """Sends 40 KiB messages until the queue refuses; returns the END
    lines."""
    body = b"".join(b"%05d " % i + b"z" * 70 + b"\r\n" for i in range(520))
    msg = b"From: app@example.test\r\nSubject: fill\r\n\r\n" + body
    return [l for l in submit(t, msg, args=["-n", "60"]) if l.startswith("END")]


@pytest.fixture
def small_tmpfs(test_dir):
    d = os.path.join(test_dir, "smallfs")
    os.makedirs(d)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs",
                    d], check=True)
    if ternlib.IS_ROOT:
        q = os.path.join(d, "queue")
        os.makedirs(q)
        subprocess.run(["chown", "tern:", q], check=True)
    yield d
    subprocess.run(["umount", "-l", d], check=False)


@pytest.mark.parametrize("kind", ["disk full", "map full"])
def test_full_queue_answers_452_and_loses_nothing(tern, small_tmpfs, kind):
    ballast = os.path.join(small_tmpfs, "ballast")
    if kind == "disk full":
        # Space the operator can free later: mail must flow again then.
        with open(ballast, "wb") as f:
            f.write(b"\0" * 256 * 1024)
        t = start(tern, queue_dir=os.path.join(small_tmpfs, "queue"))
    else:
        t = tern(sections={"domain example.test": {},
                           "queue": {"map_size": "1M", "map_size_max": "1M"}})
        t.start()
        t.cleanup_sock = os.path.join(t.run_dir, "private", "cleanup")
        ternlib.wait_for(lambda: _connectable(t.cleanup_sock), 10,
                         what="cleanup socket")
        ternlib.wait_for(lambda: _queue_ready(t.queue_dir), 10,
                         what="tern-cleanup to create the queue")
    ends = _fill_until_refused(t)
    ok = [l for l in ends if l.startswith("END 250 ")]
    full = [l for l in ends if not l.startswith("END 250 ")]
    assert ok, ends
    assert full, "the queue never filled up"
    assert all(l.startswith("END 452 4.3.1 ") for l in full), full
    acked = re.findall(r"qid=([0-9A-F]{16})", "\n".join(ok))
    msgs = read_queue(t.queue_dir)[0]
    for q in acked:
        assert q in msgs, "acknowledged message %s lost" % q
        assert msgs[q]["content"].endswith(b"00519 " + b"z" * 70 + b"\r\n")
        assert msgs[q]["msg"]["size"] == len(msgs[q]["content"])
    t.wait_log(r"queue commit failed: .*answering 452 4\.3\.1")
    # tern-cleanup is still there and answers.
    lines = submit(t, b"From: app@example.test\r\n\r\nb\r\n", name="small.eml")
    assert re.fullmatch(r"BEGIN 250 2\.1\.0 Ok provisional=[0-9A-F]{16}",
                        lines[0]), lines
    if kind == "disk full":
        # Space freed: the next message is committed, without a restart.
        os.unlink(ballast)
        lines = submit(t, b"From: app@example.test\r\n\r\nafter\r\n",
                       name="after.eml")
        end = [l for l in lines if l.startswith("END")]
        assert end and end[0].startswith("END 250 "), lines
        q = re.findall(r"qid=([0-9A-F]{16})", end[0])[0]
        assert q in read_queue(t.queue_dir)[0]


# ---- signing, with a test double of tern-signer (tests/tools/fake_signer.py)
# started by ternd in the real signer's place; it signs with dkimpy ----

FAKE_SIGNER = os.path.join(ternlib.SRC_DIR, "tests/tools/fake_signer.py")


def dkim_key(d):
    key = os.path.join(d, "dkim.pem")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True,
                   capture_output=True)
    os.chmod(key, 0o644)
    der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform",
                          "DER"], check=True, capture_output=True).stdout
    import base64
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def start_with_fake_signer(tern, test_dir, monkeypatch, mode="ok"):
    key, record = dkim_key(test_dir)
    libexec = os.path.join(test_dir, "fake-libexec")
    os.makedirs(libexec)
    os.symlink(os.path.join(ternlib.BUILD_DIR, "src/cleanup/tern-cleanup"),
               os.path.join(libexec, "tern-cleanup"))
    os.symlink(os.path.join(ternlib.BUILD_DIR, "src/smtpd/tern-smtpd"),
               os.path.join(libexec, "tern-smtpd"))
    os.symlink(FAKE_SIGNER, os.path.join(libexec, "tern-signer"))
    mode_file = os.path.join(test_dir, "signer-mode")
    with open(mode_file, "w") as f:
        f.write(mode)
    monkeypatch.setenv("FAKE_SIGNER_KEY", key)
    monkeypatch.setenv("FAKE_SIGNER_MODE_FILE", mode_file)
    monkeypatch.setenv("FAKE_SIGNER_LOG", os.path.join(test_dir, "signer.log"))
    t = tern(sections={
        "domain example.test": {"dkim_selector": "s1", "dkim_key": key},
        "domain plain.test": {}})
    t.sections["server"]["daemon_dir"] = libexec
    t.start()
    t.cleanup_sock = os.path.join(t.run_dir, "private", "cleanup")
    ternlib.wait_for(lambda: _connectable(t.cleanup_sock), 10,
                     what="cleanup socket")
    ternlib.wait_for(lambda: _queue_ready(t.queue_dir), 10,
                     what="tern-cleanup to create the queue")
    t.dkim_record = record
    t.mode_file = mode_file
    t.signer_log = os.path.join(test_dir, "signer.log")
    return t


def set_mode(t, mode):
    with open(t.mode_file, "w") as f:
        f.write(mode)


def verify(t, content):
    import dkim

    def dns(name, timeout=5):
        assert name == b"s1._domainkey.example.test."
        return t.dkim_record
    return dkim.verify(content, dnsfunc=dns)


SIGNED_MSG = (b"From: App <app@example.test>\r\nTo: a@dest.test\r\n"
              b"Subject: signed\r\n\r\nbare\nLF and bare\rCR\r\n.dot\r\n")


def test_signature_prepended_and_verifies(tern, test_dir, monkeypatch):
    t = start_with_fake_signer(tern, test_dir, monkeypatch)
    qid = queued_id(submit(t, SIGNED_MSG))
    content = read_queue(t.queue_dir)[0][qid]["content"]
    assert content.startswith(b"DKIM-Signature: v=1;")
    assert_crlf_only(content)
    assert verify(t, content)
    # The signer saw exactly the queued bytes after the signature.
    sig_len = len(headers_of(content)[0]) + 2
    with open(t.signer_log) as f:
        assert f.read().split() == ["example.test", str(len(content) - sig_len)]
    # Tampering is detected: the check can fail.
    assert not verify(t, content.replace(b"bare\r\nLF", b"bare\r\nLf"))


def test_domain_without_dkim_is_not_signed(tern, test_dir, monkeypatch):
    t = start_with_fake_signer(tern, test_dir, monkeypatch)
    msg = b"From: x@plain.test\r\nSubject: plain\r\n\r\nb\r\n"
    qid = queued_id(submit(t, msg, sender="x@plain.test"))
    content = read_queue(t.queue_dir)[0][qid]["content"]
    assert content.startswith(b"Received: ")
    assert b"DKIM-Signature" not in content
    assert not os.path.exists(t.signer_log)


@pytest.mark.parametrize("mode,log", [
    ("nokey", r"cannot sign for domain example\.test: no usable DKIM key "
              r"\(no key for example\.test\); deferring with 451 4\.7\.0"),
    ("tempfail", r"signing for domain example\.test failed: fake failure"),
    ("close", r"signing for domain example\.test failed"),
])
def test_unsigned_never_queued(tern, test_dir, monkeypatch, mode, log):
    t = start_with_fake_signer(tern, test_dir, monkeypatch, mode=mode)
    lines = submit(t, SIGNED_MSG)
    assert end_line(lines).startswith("END 451 4.7.0 "), lines
    assert read_queue(t.queue_dir)[0] == {}
    t.wait_log(log)
    # Once the signer works again, so does submission.
    set_mode(t, "ok")
    qid = ternlib.wait_for(
        lambda: re.findall(r"qid=(\w+)", "\n".join(submit(t, SIGNED_MSG))),
        10, what="a signed message to be queued")[0]
    assert verify(t, read_queue(t.queue_dir)[0][qid]["content"])


def signer_pids(t):
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True,
                         text=True).stdout
    return [int(l.split()[0]) for l in out.splitlines()
            if int(l.split()[1]) == t.proc.pid and "tern-signer" in l]


def test_signer_killed_gives_4xx_until_restarted(tern, test_dir, monkeypatch):
    import signal as sig
    t = start_with_fake_signer(tern, test_dir, monkeypatch)
    assert queued_id(submit(t, SIGNED_MSG))
    pids = ternlib.wait_for(lambda: signer_pids(t), 10, what="the signer")
    os.kill(pids[0], sig.SIGKILL)
    ternlib.wait_for(lambda: signer_pids(t) != pids, 10,
                     what="the signer to be gone")
    lines = submit(t, SIGNED_MSG)
    end = end_line(lines)
    assert end.startswith("END 451 4.7.0 ") or end.startswith("END 250 "), lines
    if end.startswith("END 250 "):
        # The master was quicker: it must be signed all the same.
        q = queued_id(lines)
        assert verify(t, read_queue(t.queue_dir)[0][q]["content"])
    t.wait_log(r"process tern-signer pid %d killed by signal 9" % pids[0])
    ternlib.wait_for(lambda: signer_pids(t), 15, what="the signer restarted")
    qid = ternlib.wait_for(
        lambda: re.findall(r"qid=(\w+)", "\n".join(submit(t, SIGNED_MSG))),
        15, what="a signed message after the restart")[0]
    assert verify(t, read_queue(t.queue_dir)[0][qid]["content"])
    for m in read_queue(t.queue_dir)[0].values():
        assert m["content"].startswith(b"DKIM-Signature: ")


# ---- the conversation itself, frame by frame ----

class Raw:
    """A raw CLEANUP connection (framing of src/lib/ipc.h). The first
    frame after HELLO carries a descriptor of proof (default the socket's
    directory, run_dir/private: peer_proof.h); proof="" sends none."""

    def __init__(self, path, proof=None):
        import socket
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(10)
        self.s.connect(path)
        self.buf = b""
        self.send(0x0001, 0, struct.pack(">I", ternlib.IPC_VERSION) +
                  self.str("raw"))
        assert self.recv()[0] == 0x0001
        if proof is None:
            proof = os.path.dirname(path)
        self.proof_fd = os.open(proof, os.O_RDONLY) if proof else None

    @staticmethod
    def str(s):
        b = s.encode() + b"\0"
        return struct.pack(">I", len(b)) + b

    def send(self, ftype, reqid, payload=b""):
        if getattr(self, "proof_fd", None) is not None:
            import socket
            fd, self.proof_fd = self.proof_fd, None
            b = struct.pack(">IHHI", len(payload), ftype, 1, reqid) + payload
            n = socket.send_fds(self.s, [b], [fd])
            os.close(fd)
            if n < len(b):      # sendall(b"") would still call send()
                self.s.sendall(b[n:])
            return
        self.s.sendall(struct.pack(">IHHI", len(payload), ftype, 0, reqid) +
                       payload)

    def recv(self):
        while True:
            if len(self.buf) >= 12:
                n, ftype, _f, reqid = struct.unpack_from(">IHHI", self.buf)
                if len(self.buf) >= 12 + n:
                    p = self.buf[12:12 + n]
                    self.buf = self.buf[12 + n:]
                    return ftype, reqid, p
            d = self.s.recv(65536)
            if not d:
                return None
            self.buf += d

    def reply(self):
        f = self.recv()
        assert f is not None and f[0] == 0x0106, f
        code = struct.unpack_from(">H", f[2])[0]
        pos, out = 2, []
        for _ in range(3):
            (n,) = struct.unpack_from(">I", f[2], pos)
            out.append(f[2][pos + 4:pos + 4 + n - 1].decode())
            pos += 4 + n
        return f[1], code, out[0], out[1], out[2]

    def begin(self, reqid, sender="app@example.test"):
        p = struct.pack(">B", 1) + self.str("") + self.str("c.test") + \
            self.str("192.0.2.9") + self.str("c.test") + self.str("") + \
            struct.pack(">B", 0) + self.str("") + self.str(sender) + \
            struct.pack(">BBQB", 0, 0, 0, 0) + self.str("")
        self.send(0x0101, reqid, p)

    def rcpt(self, reqid, addr):
        self.send(0x0102, reqid, self.str(addr) + self.str("") + b"\0")

    def data(self, reqid, b):
        self.send(0x0103, reqid, struct.pack(">I", len(b)) + b)


def test_interleaved_transactions_and_abort(tern):
    t = start(tern)
    c = Raw(t.cleanup_sock)
    c.begin(1)
    c.begin(2)
    assert c.reply()[:2] == (1, 250) and c.reply()[:2] == (2, 250)
    c.rcpt(2, "two@dest.test")
    c.rcpt(1, "one@dest.test")
    assert c.reply()[:2] == (2, 250) and c.reply()[:2] == (1, 250)
    c.data(2, b"From: app@example.test\r\nSubject: two\r\n\r\n")
    c.data(1, b"From: app@example.test\r\nSub")
    c.data(1, b"ject: one\r\n\r\nbody one\r\n")
    c.send(0x0105, 2)                       # ABORT 2
    c.send(0x0104, 1)                       # END 1
    reqid, code, status, text, qid = c.reply()
    assert (reqid, code, status) == (1, 250, "2.0.0") and qid
    c.send(0x0104, 2)                       # END for a forgotten transaction
    assert c.reply()[:3] == (2, 503, "5.5.1")
    msgs = read_queue(t.queue_dir)[0]
    assert list(msgs) == [qid]
    assert b"Subject: one\r\n" in msgs[qid]["content"]
    assert [r["address"] for r in msgs[qid]["rcpts"]] == ["one@dest.test"]


def test_malformed_frame_closes_only_that_connection(tern):
    t = start(tern)
    good = Raw(t.cleanup_sock)
    bad = Raw(t.cleanup_sock)
    good.begin(7)
    bad.send(0x0101, 1, b"\x01garbage")
    assert bad.recv() is None               # closed by cleanup
    assert good.reply()[:2] == (7, 250)
    good.rcpt(7, "a@dest.test")
    assert good.reply()[:2] == (7, 250)
    good.data(7, b"From: app@example.test\r\n\r\nb\r\n")
    good.send(0x0104, 7)
    assert good.reply()[1] == 250
    t.wait_log(r"malformed CLEANUP_BEGIN")


# ---- with the real tern-signer (libopendkim); dkimpy verifies ----

def key_pair(d, kind):
    """A PEM private key (PKCS#8) and its DKIM DNS record."""
    import base64
    key = os.path.join(d, "%s.pem" % kind)
    algo = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] \
        if kind == "rsa" else ["-algorithm", "ED25519"]
    subprocess.run(["openssl", "genpkey", *algo, "-out", key], check=True,
                   capture_output=True)
    os.chmod(key, 0o600)
    der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform",
                          "DER"], check=True, capture_output=True).stdout
    if kind == "rsa":
        return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    return key, b"v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:])


def test_real_signer_rsa_and_ed25519_verify(tern, test_dir):
    import dkim
    rsa, rsa_rec = key_pair(test_dir, "rsa")
    ed, ed_rec = key_pair(test_dir, "ed25519")
    t = tern(sections={"domain example.test": {
        "dkim_selector": "rsa1 ed1", "dkim_key": "%s %s" % (rsa, ed)}})
    t.start()
    t.cleanup_sock = os.path.join(t.run_dir, "private", "cleanup")
    ternlib.wait_for(lambda: _connectable(t.cleanup_sock), 10,
                     what="cleanup socket")
    ternlib.wait_for(lambda: _queue_ready(t.queue_dir), 10,
                     what="tern-cleanup to create the queue")
    records = {b"rsa1._domainkey.example.test.": rsa_rec,
               b"ed1._domainkey.example.test.": ed_rec}

    def dns(name, timeout=5):
        return records.get(name)

    msg = (b"From: App <app@example.test>\r\nTo: a@dest.test\r\n"
           b"Subject: real signer\r\n\r\nbare\nLF, bare\rCR\r\n")
    # The signer may still be starting: the first try can be a 451.
    qid = ternlib.wait_for(
        lambda: re.findall(r"qid=(\w+)", "\n".join(submit(t, msg))), 15,
        what="a signed message")[0]
    content = read_queue(t.queue_dir)[0][qid]["content"]
    assert_crlf_only(content)
    hdrs = headers_of(content)
    sigs = [h for h in hdrs if h.startswith(b"DKIM-Signature:")]
    assert hdrs[:2] == sigs and len(sigs) == 2, hdrs[:3]
    algos = sorted(re.search(rb"a=([\w-]+)", s).group(1) for s in sigs)
    assert algos == [b"ed25519-sha256", b"rsa-sha256"]
    d = dkim.DKIM(content)
    assert d.verify(idx=0, dnsfunc=dns) and d.verify(idx=1, dnsfunc=dns)
    assert not dkim.DKIM(content.replace(b"real signer", b"real signor")).verify(
        idx=0, dnsfunc=dns)
    for m in read_queue(t.queue_dir)[0].values():
        assert m["content"].startswith(b"DKIM-Signature: ")


def test_real_signer_missing_key_is_451(tern, test_dir):
    t = tern(sections={"domain example.test": {
        "dkim_selector": "s1",
        "dkim_key": os.path.join(test_dir, "no-such-key.pem")}})
    t.start()
    t.cleanup_sock = os.path.join(t.run_dir, "private", "cleanup")
    ternlib.wait_for(lambda: _connectable(t.cleanup_sock), 10,
                     what="cleanup socket")
    ternlib.wait_for(lambda: _queue_ready(t.queue_dir), 10,
                     what="tern-cleanup to create the queue")
    msg = b"From: app@example.test\r\nSubject: x\r\n\r\nb\r\n"
    for _ in range(3):
        lines = submit(t, msg)
        assert end_line(lines).startswith("END 451 4.7.0 "), lines
        if "no usable DKIM key" in end_line(lines):
            break
        time.sleep(1)
    assert "no usable DKIM key" in end_line(lines)
    t.wait_log(r"cannot sign for domain example\.test: no usable DKIM key")
    assert read_queue(t.queue_dir)[0] == {}


def test_cleanup_killed_mid_stream_loses_nothing_acknowledged(tern):
    import signal as sig
    t = start(tern)
    body = b"".join(b"%04d " % i + b"k" * 60 + b"\r\n" for i in range(300))
    path = os.path.join(t.dir, "kill.eml")
    with open(path, "wb") as f:
        f.write(b"From: app@example.test\r\nSubject: k\r\n\r\n" + body)
    procs = [subprocess.Popen([CLIENT, "-f", "app@example.test", "-r",
                               "k%d@dest.test" % i, "-n", "400",
                               t.cleanup_sock, path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=ternlib.daemon_env()) for i in range(4)]
    ternlib.wait_for(lambda: len(read_queue(t.queue_dir)[0]) >= 20, 20,
                     what="messages to be queued")
    pid = t.pids_of("cleanup")[0]
    os.kill(pid, sig.SIGKILL)
    acked = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 2, err       # the connection was cut
        acked += re.findall(r"qid=([0-9A-F]{16})", out.decode())
    assert len(acked) >= 20
    t.wait_log(r"process tern-cleanup pid %d killed by signal 9" % pid)
    msgs = read_queue(t.queue_dir)[0]
    for q in acked:
        assert q in msgs, "acknowledged message %s lost" % q
        assert msgs[q]["content"].endswith(b"0299 " + b"k" * 60 + b"\r\n")
    # The master starts a new tern-cleanup, which takes mail again.
    lines = ternlib.wait_for(
        lambda: _connectable(t.cleanup_sock) and
        submit(t, b"From: app@example.test\r\n\r\nb\r\n", name="after.eml"),
        15, what="tern-cleanup to be back")
    assert queued_id(lines)


def test_hostile_envelope_cannot_forge_log_lines(tern):
    t = start(tern)
    msg = b"From: app@example.test\r\n\r\nb\r\n"
    lines = submit(t, msg, sender="x\r\nforged: line@example.test",
                   args=["-c", "evil\nforged: client"])
    assert lines[0].startswith("BEGIN 553 5.1.7 ")
    lines = submit(t, msg, rcpts=("a\nforged: rcpt@dest.test",))
    assert lines[1].startswith("RCPT <a\nforged: rcpt@dest.test> 501 5.1.3") \
        or lines[1].startswith("RCPT <a")
    t.wait_log(r"NOQUEUE: reject: RCPT from")
    assert not re.search(r"^forged:", t.log_text(), re.M)


def test_smtpd_socket_refuses_sources_smtpd_does_not_have(tern):
    """tern-smtpd reaches tern-cleanup only through the socket in its jail
    (run_dir/jail/smtpd/private/cleanup). A compromised smtpd claiming to
    be tern-bounce (or the sendmail command, or the HTTP API) would skip
    the sending-domain check and send with a forged envelope sender: on
    that socket every source but submission and inbound is refused with
    554 5.7.0 and logged; nothing is queued. tern's own clients on
    run_dir/private/cleanup (tern-bounce here) still claim what they are."""
    from ipcdefs import CLEANUP_SOURCE
    t = start(tern)
    t.cleanup_sock = os.path.join(t.run_dir, "jail", "smtpd", "private",
                                  "cleanup")
    ternlib.wait_for(lambda: _connectable(t.cleanup_sock), 10,
                     what="tern-smtpd's cleanup socket")
    msg = b"From: ceo@bank.test\r\nSubject: wire it\r\n\r\nnow\r\n"
    for name in ("BOUNCE", "SENDMAIL", "HTTP"):
        lines = submit(t, msg, sender="ceo@bank.test",
                       args=["-s", str(CLEANUP_SOURCE[name])])
        assert lines == ["BEGIN 554 5.7.0 Source %s not allowed on "
                         "tern-smtpd's socket" % name.lower()], lines
        t.wait_log(r"NOQUEUE: reject: MAIL from tern-smtpd's socket claiming "
                   r"source %s \(sender=<ceo@bank\.test>\): 554 5\.7\.0 "
                   % name.lower())
    assert read_queue(t.queue_dir)[0] == {}
    # What smtpd takes in still passes, with its own checks: a foreign
    # sender is refused for submission, accepted for inbound mail.
    lines = submit(t, msg, sender="ceo@bank.test",
                   args=["-s", str(CLEANUP_SOURCE["SUBMISSION"])])
    assert lines[0].startswith("BEGIN 553 5.7.1 "), lines
    sub = queued_id(submit(t, b"From: app@example.test\r\n\r\nb\r\n",
                           args=["-s", str(CLEANUP_SOURCE["SUBMISSION"])]))
    inb = queued_id(submit(t, msg, sender="ceo@bank.test",
                           rcpts=("bounces@example.test",),
                           args=["-s", str(CLEANUP_SOURCE["INBOUND"])]))
    queued = read_queue(t.queue_dir)[0]
    assert queued[sub]["msg"]["source"] == CLEANUP_SOURCE["SUBMISSION"]
    assert queued[inb]["msg"]["source"] == CLEANUP_SOURCE["INBOUND"]
    # The private socket is tern's own: tern-bounce's DSN from <> passes
    # (with the descriptor of verp.key tern-bounce shows, peer_proof.h).
    t.cleanup_sock = os.path.join(t.run_dir, "private", "cleanup")
    verp_key = os.path.join(t.queue_dir, "verp.key")
    ternlib.wait_for(lambda: os.path.exists(verp_key), 10, what="the VERP key")
    dsn = queued_id(submit(t, b"From: MAILER-DAEMON@example.test\r\n\r\nd\r\n",
                           sender="", args=["-s", str(CLEANUP_SOURCE["BOUNCE"]),
                                            "-P", verp_key]))
    assert read_queue(t.queue_dir)[0][dsn]["msg"]["source"] == \
        CLEANUP_SOURCE["BOUNCE"]
