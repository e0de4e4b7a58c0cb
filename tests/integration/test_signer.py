"""tern-signer under ternd, driven by tests/tools/sign_client (the
signer_client library cleanup uses), signatures checked by dkimpy against
keys published in a dnsmasq zone; and ternctl dkim keygen / check."""
import os
import pwd
import re
import signal
import socket
import struct
import subprocess
import time

import dkim
import pytest

import ternlib
from ternlib import BUILD_DIR, wait_for

SIGN_CLIENT = os.path.join(BUILD_DIR, "tests/tools/sign_client")
SIGN_OK, SIGN_NO_KEY, SIGN_TEMPFAIL = 0, 1, 2

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@dest.test>\r\n"
    b"Cc: carol@dest.test\r\n"
    b"Subject: Quarterly report\r\n"
    b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <r1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"List-Unsubscribe: <https://example.test/u/1>,\r\n"
    b"\t<mailto:unsub@example.test>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"Feedback-ID: 1:campaign:example\r\n"
    b"X-Mailer: not signed\r\n"
    b"\r\n"
    b"Hello Bob,\r\n\r\nthe numbers are in.  \r\n\r\n\r\n")


# ---- helpers ----

def keygen(t, domain, selector, path, *args):
    """ternctl dkim keygen; returns the zone line it printed."""
    r = t.ternctl("dkim", "keygen", domain, selector, "--out", path, *args)
    assert r.returncode == 0, r.stderr
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    return r.stdout.strip()


def txt_option(zone_line):
    """A dnsmasq txt-record option from a zone file line."""
    m = re.match(r'^(\S+)\. IN TXT (.*)$', zone_line)
    assert m, zone_line
    strings = re.findall(r'"([^"]*)"', m.group(2))
    assert all(len(s) <= 255 for s in strings)
    return "txt-record=" + m.group(1) + "," + ",".join(strings)


def txt_lookup(port, name):
    """TXT strings at name from the test DNS server, joined (dkimpy dnsfunc)."""
    import dnslib
    q = dnslib.DNSRecord.question(name.rstrip("."), "TXT")
    a = dnslib.DNSRecord.parse(q.send("127.0.0.1", port, timeout=3))
    for rr in a.rr:
        if rr.rtype == dnslib.QTYPE.TXT:
            return b"".join(rr.rdata.data)
    return None


def verify_all(message, dns, expect):
    """Verifies every DKIM-Signature with dkimpy; returns their tags."""
    def dnsfunc(name, timeout=5):
        return txt_lookup(dns.port, name.decode())
    d = dkim.DKIM(message)
    sigs = [v for (k, v) in dkim.rfc822_parse(message)[0]
            if k.lower() == b"dkim-signature"]
    assert len(sigs) == expect, message[:2000]
    tags = []
    for i in range(len(sigs)):
        assert d.verify(idx=i, dnsfunc=dnsfunc), f"signature {i} fails"
        tags.append(dkim.util.parse_tag_value(sigs[i]))
    return tags


def sign(t, domain, path, *args, timeout=60):
    """Runs sign_client; returns (returncode, stdout bytes, job lines)."""
    sock = os.path.join(t.run_dir, "private", "signer")
    r = subprocess.run([SIGN_CLIENT, *args, sock, domain, path],
                       capture_output=True, timeout=timeout,
                       env=ternlib.daemon_env())
    jobs = re.findall(r"^job=(\d+) status=(\d+) error=(.*) headers=(\d+)$",
                      r.stderr.decode(), re.M)
    return r.returncode, r.stdout, jobs


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture
def signing(tern, test_dir):
    """A tern with example.test signed by rsa (s1) and ed25519 (s2) keys,
    published in a dnsmasq zone that ternctl dkim check also uses."""
    made = {}

    def make(extra_domains=None, start=True):
        t = tern()
        keys = os.path.join(test_dir, "keys")
        os.makedirs(keys, exist_ok=True)
        rsa = os.path.join(keys, "rsa.pem")
        ed = os.path.join(keys, "ed.pem")
        zone = [keygen(t, "example.test", "s1", rsa),
                keygen(t, "example.test", "s2", ed, "--algorithm", "ed25519")]
        dns = ternlib.Dns([txt_option(z) for z in zone], test_dir)
        made["dns"] = dns
        t.sections["delivery"] = {"dns_servers": dns.server}
        t.sections["domain example.test"] = {
            "dkim_selector": "s1 s2", "dkim_key": f"{rsa} {ed}"}
        for name, keys_ in (extra_domains or {}).items():
            t.sections[f"domain {name}"] = keys_
        t.write_config()
        if start:
            t.start()
            t.wait_log(r"domain=example\.test selector=s2 .*: loaded")
        return t, dns

    yield make
    if "dns" in made:
        made["dns"].stop()


# ---- signing ----

def test_rsa_and_ed25519_signatures_verify(signing, test_dir):
    t, dns = signing()
    rc, out, jobs = sign(t, "example.test", write(
        os.path.join(test_dir, "m.eml"), MESSAGE))
    assert rc == 0 and jobs == [("0", "0", "", "2")], jobs
    assert out.endswith(MESSAGE)
    tags = verify_all(out, dns, 2)
    assert [x[b"a"] for x in tags] == [b"rsa-sha256", b"ed25519-sha256"]
    assert [x[b"s"] for x in tags] == [b"s1", b"s2"]
    for x in tags:
        assert x[b"c"] == b"relaxed/relaxed" and x[b"d"] == b"example.test"
        h = [f.strip().lower() for f in x[b"h"].split(b":")]
        assert h.count(b"from") == 2, h          # oversigned
        for name in (b"to", b"cc", b"subject", b"date", b"message-id",
                     b"mime-version", b"content-type",
                     b"content-transfer-encoding", b"list-unsubscribe",
                     b"list-unsubscribe-post", b"feedback-id"):
            assert h.count(name) == 1, (name, h)
        assert b"x-mailer" not in h and b"reply-to" not in h
    # Oversigning: a From added in transit breaks the signature.
    forged = out.replace(b"From: Alice", b"From: Mallory <m@evil.test>\r\n"
                         b"From: Alice", 1)
    assert not dkim.DKIM(forged).verify(
        idx=0, dnsfunc=lambda n, timeout=5: txt_lookup(dns.port, n.decode()))
    assert re.search(r"reqid=1 domain=example\.test size=\d+ signatures=2: "
                     r"signed", t.log_text())


def verifies(message, dns, idx):
    """dkimpy's verdict on one signature (a body hash mismatch raises)."""
    try:
        return dkim.DKIM(message).verify(
            idx=idx, dnsfunc=lambda n, timeout=5: txt_lookup(dns.port,
                                                             n.decode()))
    except dkim.ValidationError:
        return False


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "relaxed/simple",
                                   "simple/simple", "simple/relaxed"])
def test_configured_canonicalization_signs_and_verifies(signing, test_dir,
                                                        canon):
    """dkim_canonicalization sets c= for both keys, and dkimpy verifies both
    signatures; what each one tolerates: a simple header breaks when a
    signed field is refolded or its whitespace changes, a relaxed one does
    not; a simple body breaks when trailing spaces go, a relaxed one does
    not; all survive an unsigned field being added."""
    t, dns = signing(start=False)
    t.sections["domain example.test"]["dkim_canonicalization"] = canon
    t.write_config()
    t.start()
    t.wait_log(r"domain=example\.test selector=s2 .*: loaded")
    rc, out, jobs = sign(t, "example.test", write(
        os.path.join(test_dir, "m.eml"), MESSAGE))
    assert rc == 0 and jobs == [("0", "0", "", "2")], jobs
    tags = verify_all(out, dns, 2)
    assert [x[b"c"] for x in tags] == [canon.encode()] * 2
    header, body = canon.split("/")

    def after(old, new):
        changed = out.replace(old, new, 1)
        assert changed != out, old
        return [verifies(changed, dns, i) for i in range(2)]

    # The body ends "the numbers are in.  ": relaxed ignores the spaces.
    assert after(b"are in.  \r\n", b"are in.\r\n") == [body == "relaxed"] * 2
    # A signed field refolded, and one with a doubled space.
    assert after(b"List-Unsubscribe: <https://example.test/u/1>,\r\n\t<",
                 b"List-Unsubscribe: <https://example.test/u/1>, <") == \
        [header == "relaxed"] * 2
    assert after(b"Subject: Quarterly report", b"Subject: Quarterly  report") \
        == [header == "relaxed"] * 2
    # An unsigned field added on the way.
    assert after(b"X-Mailer: not signed\r\n",
                 b"X-Mailer: not signed\r\nX-Relay: passed by\r\n") == \
        [True, True]


def test_unknown_canonicalization_is_a_config_error(signing, test_dir):
    t, dns = signing(start=False)
    t.sections["domain example.test"]["dkim_canonicalization"] = "simple/strict"
    t.write_config()
    r = t.ternctl("check-config")
    assert r.returncode != 0
    assert re.search(r"tern\.conf:\d+: .*'simple/strict' is not one of: "
                     r"relaxed/relaxed relaxed/simple simple/simple "
                     r"simple/relaxed", r.stderr + r.stdout), r.stderr


def test_signer_reads_keys_then_drops_privileges(signing, test_dir):
    """Keys readable by root only are loaded; the signer then serves as the
    unprivileged user inside its empty jail, run_dir/jail/signer (as
    root), or as the invoking user."""
    t, dns = signing()
    pid = t.pids_of("signer")[0]
    want = pwd.getpwnam("tern").pw_uid if ternlib.IS_ROOT else os.getuid()

    def uids():
        with open(f"/proc/{pid}/status") as f:
            return [int(x) for l in f if l.startswith("Uid")
                    for x in l.split()[1:]]
    wait_for(lambda: all(u == want for u in uids()), 10,
             what="the signer to drop privileges")
    key = os.path.join(test_dir, "keys", "rsa.pem")
    assert os.stat(key).st_mode & 0o077 == 0
    if ternlib.IS_ROOT:
        jail = os.path.realpath(os.path.join(t.run_dir, "jail", "signer"))
        assert os.readlink(f"/proc/{pid}/root") == jail
        # Nothing is reachable from inside the chroot: no key, no socket.
        assert ternlib.tree(f"/proc/{pid}/root") == []
    rc, out, jobs = sign(t, "example.test",
                         write(os.path.join(test_dir, "m.eml"), MESSAGE))
    assert jobs[0][1] == "0"
    verify_all(out, dns, 2)


def test_chunking_does_not_change_the_signature(signing, test_dir):
    """Any split of the stream, even one byte per frame, signs the same."""
    t, dns = signing()
    path = write(os.path.join(test_dir, "m.eml"), MESSAGE)
    for chunk in ("1", "2", "7", "65536"):
        rc, out, jobs = sign(t, "example.test", path, "-c", chunk)
        assert rc == 0 and jobs[0][1] == "0", jobs
        verify_all(out, dns, 2)


def test_missing_key_is_no_key_and_config_still_loads(signing, test_dir):
    missing = os.path.join(test_dir, "keys", "absent.pem")
    t, dns = signing({"nokey.test": {"dkim_selector": "k1",
                                     "dkim_key": missing}})
    r = t.ternctl("check-config")
    assert r.returncode == 0, r.stderr
    t.wait_log(r"domain=nokey\.test: no usable DKIM key")
    path = write(os.path.join(test_dir, "m.eml"), MESSAGE)
    for domain in ("nokey.test", "unknown.test"):
        rc, out, jobs = sign(t, domain, path)
        assert rc == 0 and jobs[0][1] == str(SIGN_NO_KEY), jobs
        assert "no DKIM key" in jobs[0][2] and jobs[0][3] == "0"
        t.wait_log(rf"reqid=\d+ domain={domain}: no DKIM key for the domain: "
                   r"not signed")
    # The signer is still there for the domains it can sign.
    rc, out, jobs = sign(t, "EXAMPLE.test", path)
    assert jobs[0][1] == "0"
    t.wait_log(r"reqid=\d+ domain=example\.test size=\d+ signatures=2: signed")
    verify_all(out, dns, 2)


def test_short_rsa_key_refused_at_load(signing, test_dir):
    os.makedirs(os.path.join(test_dir, "keys"))
    short = os.path.join(test_dir, "keys", "short.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:1024", "-out", short],
                   check=True, capture_output=True)
    t, dns = signing({"short.test": {"dkim_selector": "old",
                                     "dkim_key": short}})
    t.wait_log(r"domain=short\.test selector=old: .*RSA key of 1024 bits is "
               r"too short \(at least 2048\)")
    rc, out, jobs = sign(t, "short.test",
                         write(os.path.join(test_dir, "m.eml"), MESSAGE))
    assert jobs[0][1] == str(SIGN_NO_KEY), jobs


def test_sighup_reload_picks_up_a_new_key(signing, test_dir):
    later = os.path.join(test_dir, "keys", "later.pem")
    t, dns = signing({"later.test": {"dkim_selector": "s1",
                                     "dkim_key": later}})
    path = write(os.path.join(test_dir, "m.eml"),
                 MESSAGE.replace(b"example.test", b"later.test"))
    assert sign(t, "later.test", path)[2][0][1] == str(SIGN_NO_KEY)
    zone = keygen(t, "later.test", "s1", later)
    dns.stop()
    dns2 = ternlib.Dns([txt_option(zone)], test_dir)
    try:
        old = t.pids_of("signer")
        t.proc.send_signal(signal.SIGHUP)
        t.wait_log(r"domain=later\.test selector=s1 .*: loaded")
        wait_for(lambda: t.pids_of("signer") and
                 not set(t.pids_of("signer")) & set(old), 10,
                 what="the old signer to be replaced")
        rc, out, jobs = sign(t, "later.test", path)
        assert jobs[0][1] == "0", jobs
        verify_all(out, dns2, 1)
    finally:
        dns2.stop()


def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


def big_message(size):
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"
    return MESSAGE + line * (size // len(line))


def test_big_message_streamed_with_flat_memory(signing, test_dir, monkeypatch):
    # ASan's quarantine would keep freed frames resident and hide the point.
    env = ternlib.daemon_env
    monkeypatch.setattr(ternlib, "daemon_env", lambda: dict(
        env(), ASAN_OPTIONS=env()["ASAN_OPTIONS"] +
        ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"))
    t, dns = signing()
    small = write(os.path.join(test_dir, "small.eml"), MESSAGE)
    assert sign(t, "example.test", small)[2][0][1] == "0"
    pid = t.pids_of("signer")[0]
    before = vm_hwm_kb(pid)
    five = write(os.path.join(test_dir, "five.eml"), big_message(5 << 20))
    rc, out, jobs = sign(t, "example.test", five, "-c", "65536")
    assert jobs[0][1] == "0", jobs
    verify_all(out, dns, 2)
    huge = write(os.path.join(test_dir, "huge.eml"), big_message(40 << 20))
    rc, out, jobs = sign(t, "example.test", huge, "-c", "65536")
    assert jobs[0][1] == "0", jobs
    grown = vm_hwm_kb(pid) - before
    assert t.pids_of("signer") == [pid]
    assert grown < 8 * 1024, f"peak RSS grew by {grown} kB for 45 MB signed"


def test_many_jobs_in_flight_on_one_connection(signing, test_dir):
    t, dns = signing()
    outdir = os.path.join(test_dir, "out")
    os.makedirs(outdir)
    path = write(os.path.join(test_dir, "m.eml"), big_message(200000))
    rc, out, jobs = sign(t, "example.test", path, "-n", "60", "-a", "-o",
                         outdir, "-c", "4000")
    assert rc == 0
    # Odd jobs were aborted after their data: no answer, no harm.
    assert sorted(int(j[0]) for j in jobs) == list(range(0, 60, 2))
    assert all(j[1] == "0" and j[3] == "2" for j in jobs), jobs
    for j in jobs:
        with open(os.path.join(outdir, f"{j[0]}.eml"), "rb") as f:
            verify_all(f.read(), dns, 2)


def test_many_clients_through_the_reading_pause(signing, test_dir):
    """16 connections stream 32 MB at once, far more than the 2 MB the
    signer lets wait for its threads: it stops reading and resumes, and
    every job is answered and verifies."""
    t, dns = signing()
    pid = t.pids_of("signer")[0]
    sock = os.path.join(t.run_dir, "private", "signer")
    path = write(os.path.join(test_dir, "m.eml"), big_message(1 << 20))
    procs = []
    for i in range(16):
        outdir = os.path.join(test_dir, f"out{i}")
        os.makedirs(outdir)
        procs.append((outdir, subprocess.Popen(
            [SIGN_CLIENT, "-n", "2", "-c", "3000", "-o", outdir, sock,
             "example.test", path], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=ternlib.daemon_env())))
    for outdir, p in procs:
        err = p.communicate(timeout=120)[1].decode()
        assert p.returncode == 0, err
        jobs = re.findall(r"^job=(\d+) status=(\d+) error=(.*) headers=(\d+)$",
                          err, re.M)
        assert sorted(j[0] for j in jobs) == ["0", "1"], err
        assert all(j[1] == "0" and j[3] == "2" for j in jobs), err
    with open(os.path.join(procs[-1][0], "1.eml"), "rb") as f:
        verify_all(f.read(), dns, 2)
    assert t.pids_of("signer") == [pid]


def test_bad_header_is_a_temporary_failure(signing, test_dir):
    t, dns = signing()
    path = write(os.path.join(test_dir, "m.eml"),
                 b"From: a@example.test\nSubject: bare LF\r\n\r\nbody\r\n")
    rc, out, jobs = sign(t, "example.test", path)
    assert jobs[0][1] == str(SIGN_TEMPFAIL) and "bare LF" in jobs[0][2], jobs
    t.wait_log(r"not signed: bare LF in the header")
    cases = [
        (b"From: a@example.test\r\n\r\nline\nsmuggled\r\n",
         "bare LF in the body"),
        (b"From: a@example.test\r\n\r\nline\r.\r\n", "bare CR in the body"),
        (b"From: a@example.test\r\nno colon\r\n\r\nbody\r\n",
         "header field refused"),
        (b"Subject: no From\r\n\r\nbody\r\n", 'required header "from"'),
    ]
    for body, why in cases:
        rc, out, jobs = sign(t, "example.test", write(path, body))
        assert jobs[0][1] == str(SIGN_TEMPFAIL) and why in jobs[0][2], jobs


def test_stuck_signer_times_out_with_tempfail(signing, test_dir):
    t, dns = signing()
    path = write(os.path.join(test_dir, "m.eml"), MESSAGE)
    assert sign(t, "example.test", path)[2][0][1] == "0"
    pid = t.pids_of("signer")[0]
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        rc, out, jobs = sign(t, "example.test", path, "-t", "2")
        assert time.monotonic() - start < 10
        assert jobs[0][1] == str(SIGN_TEMPFAIL), jobs
        assert "did not answer in time" in jobs[0][2]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert sign(t, "example.test", path)[2][0][1] == "0"


def test_killed_signer_gives_tempfail_then_comes_back(signing, test_dir):
    t, dns = signing()
    path = write(os.path.join(test_dir, "m.eml"), big_message(3 << 20))
    pid = t.pids_of("signer")[0]
    sock = os.path.join(t.run_dir, "private", "signer")
    # Jobs 1 to 19 end only 3 s after job 0 answered: in flight for sure.
    p = subprocess.Popen([SIGN_CLIENT, "-n", "20", "-c", "1000", "-w",
                          "3000", "-o", test_dir, sock, "example.test",
                          path],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=ternlib.daemon_env())
    t.wait_log(r"reqid=\d+ domain=example\.test .*: signed")
    os.kill(pid, signal.SIGKILL)
    err = p.communicate(timeout=60)[1].decode()
    statuses = re.findall(r"status=(\d)", err)
    assert len(statuses) == 20 and set(statuses) <= {"0", "2"}, err
    assert "2" in statuses, err
    assert "lost connection to the signer" in err
    wait_for(lambda: t.pids_of("signer") and t.pids_of("signer") != [pid], 15,
             what="ternd to restart the signer")
    rc, out, jobs = sign(t, "example.test", write(
        os.path.join(test_dir, "m.eml"), MESSAGE))
    assert jobs[0][1] == "0"


def test_ed25519_recycle_restarts_the_signer(signing, test_dir, monkeypatch):
    monkeypatch.setenv("TERN_SIGNER_ED25519_RECYCLE", "3")
    t, dns = signing()
    path = write(os.path.join(test_dir, "m.eml"), MESSAGE)
    first = t.pids_of("signer")
    for _ in range(3):
        assert sign(t, "example.test", path)[2][0][1] == "0"
    t.wait_log(r"recycling after 3 ed25519 signatures")
    # Both keys were parsed once at start, not per message (key_cache.c).
    t.wait_log(r"tern/signer\[\d+\]: 6 signatures used the keys parsed "
               r"at start")
    wait_for(lambda: t.pids_of("signer") and t.pids_of("signer") != first, 15,
             what="a fresh signer")
    rc, out, jobs = sign(t, "example.test", path)
    assert jobs[0][1] == "0"
    verify_all(out, dns, 2)


# ---- the IPC protocol from a hostile or broken client ----

IPC_HELLO, SIGN_BEGIN, SIGN_DATA, SIGN_END, SIGN_ABORT, SIGN_REPLY = \
    0x0001, 0x0201, 0x0202, 0x0203, 0x0204, 0x0205


def frame(type_, reqid, payload=b"", length=None):
    n = len(payload) if length is None else length
    return struct.pack(">IHHI", n, type_, 0, reqid) + payload


def ipc_str(s):
    b = s.encode() + b"\0"
    return struct.pack(">I", len(b)) + b


def hello():
    return frame(IPC_HELLO, 0, struct.pack(">I", ternlib.IPC_VERSION) +
                 ipc_str("test"))


def send_proven(s, t, data):
    """Sends data (HELLO and frames), the first frame after HELLO with a
    descriptor of run_dir/private (IPC_F_FD), as tern-signer asks for
    (peer_proof.h)."""
    at = len(hello())
    b = bytearray(data)
    b[at + 6:at + 8] = struct.pack(">H", 1)
    fd = os.open(os.path.join(t.run_dir, "private"), os.O_RDONLY)
    try:
        n = socket.send_fds(s, [bytes(b[:65536])], [fd])
    finally:
        os.close(fd)
    # Not sendall(b"") when all went: it still calls send(), which fails
    # with EPIPE if the signer already closed on the malformed frame.
    if n < len(b):
        s.sendall(bytes(b[n:]))


def read_frames(sock, want_type, timeout=5):
    """Reads until a frame of want_type arrives or the signer closes."""
    sock.settimeout(timeout)
    buf = b""
    while True:
        while len(buf) >= 12:
            n, typ, _f, reqid = struct.unpack(">IHHI", buf[:12])
            if len(buf) < 12 + n:
                break
            payload, buf = buf[12:12 + n], buf[12 + n:]
            if typ == want_type:
                return reqid, payload
        data = sock.recv(65536)
        if not data:
            return None
        buf += data


@pytest.mark.parametrize("bad", [
    frame(0x7777, 1),                                       # unknown type
    frame(SIGN_DATA, 9, struct.pack(">I", 3) + b"abc"),     # unknown job
    frame(SIGN_BEGIN, 1, struct.pack(">I", 50) + b"x"),     # truncated str
    frame(SIGN_BEGIN, 1, struct.pack(">I", 2) + b"ab"),     # no NUL
    frame(SIGN_BEGIN, 1, ipc_str("example.test") + b"!"),   # left over
    frame(SIGN_BEGIN, 1, ipc_str("example.test")) +
    frame(SIGN_BEGIN, 1, ipc_str("example.test")),          # duplicate job
    frame(SIGN_END, 5),                                     # END, no BEGIN
    frame(SIGN_END, 5, b"", length=(1 << 24)),              # too long
    frame(SIGN_REPLY, 1, b"\0"),                            # wrong way
], ids=["type", "unknown-job", "truncated", "nul", "leftover", "duplicate",
        "end-unknown", "length", "reply"])
def test_malformed_frames_close_only_that_connection(signing, test_dir, bad):
    t, dns = signing()
    pid = t.pids_of("signer")[0]
    sock_path = os.path.join(t.run_dir, "private", "signer")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path)
        send_proven(s, t, hello() + bad)
        assert read_frames(s, SIGN_REPLY) is None    # closed, no reply
    t.wait_log(r"tern/signer\[\d+\]: .*(malformed|unknown|unexpected|"
               r"already open|longer)")
    assert t.pids_of("signer") == [pid]
    rc, out, jobs = sign(t, "example.test",
                         write(os.path.join(test_dir, "m.eml"), MESSAGE))
    assert jobs[0][1] == "0"


def test_too_many_open_jobs_close_the_connection(signing, test_dir):
    t, dns = signing()
    pid = t.pids_of("signer")[0]
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(os.path.join(t.run_dir, "private", "signer"))
        send_proven(s, t, hello() + b"".join(
            frame(SIGN_BEGIN, i, ipc_str("example.test"))
            for i in range(1, 10002)))
        assert read_frames(s, SIGN_REPLY, timeout=30) is None
    t.wait_log(r"more than 10000 jobs open")
    assert t.pids_of("signer") == [pid]
    rc, out, jobs = sign(t, "example.test",
                         write(os.path.join(test_dir, "m.eml"), MESSAGE))
    assert jobs[0][1] == "0"


def test_connection_closed_while_jobs_sign(signing, test_dir):
    """A client that closes with jobs everywhere: one ended and signing on
    a worker, one large one still hashing, one open with data queued. The
    jobs a worker holds are dropped when it is done, unanswered; ASan (the
    teardown checks the log) sees no use after free; the signer serves on."""
    t, dns = signing()
    pid = t.pids_of("signer")[0]
    sock_path = os.path.join(t.run_dir, "private", "signer")
    big = big_message(300000)

    def data_frames(reqid, body):
        return b"".join(
            frame(SIGN_DATA, reqid,
                  struct.pack(">I", len(body[o:o + 65536])) +
                  body[o:o + 65536])
            for o in range(0, len(body), 65536))

    request = (hello() +
               frame(SIGN_BEGIN, 1, ipc_str("example.test")) +
               data_frames(1, MESSAGE) + frame(SIGN_END, 1) +
               frame(SIGN_BEGIN, 2, ipc_str("example.test")) +
               data_frames(2, big) + frame(SIGN_END, 2) +
               frame(SIGN_BEGIN, 3, ipc_str("example.test")) +
               data_frames(3, big[:100000]))
    for i in range(40):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(sock_path)
            send_proven(s, t, request)
            time.sleep((0, 0.0005, 0.002, 0.01)[i % 4])
    t.wait_log(r"tern/signer\[\d+\]: reqid=\d+ domain=example\.test: the "
               r"client went away while it was signed: dropped")
    time.sleep(1)
    assert t.pids_of("signer") == [pid]
    rc, out, jobs = sign(t, "example.test",
                         write(os.path.join(test_dir, "m.eml"), MESSAGE))
    assert jobs[0][1] == "0"
    verify_all(out, dns, 2)


def test_raw_protocol_reply_and_abort(signing, test_dir):
    """The wire format of ipc.h, spoken by hand: ABORT frees a job, END
    gets SIGN_REPLY with u8 status, str error, u32 n, n str headers."""
    t, dns = signing()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(os.path.join(t.run_dir, "private", "signer"))
        data = struct.pack(">I", len(MESSAGE)) + MESSAGE
        send_proven(s, t, hello() +
                    frame(SIGN_BEGIN, 7, ipc_str("example.test")) +
                    frame(SIGN_DATA, 7, data) + frame(SIGN_ABORT, 7) +
                    frame(SIGN_ABORT, 99) +               # unknown: ignored
                    frame(SIGN_BEGIN, 7, ipc_str("example.test")) +
                    frame(SIGN_DATA, 7, data) + frame(SIGN_END, 7))
        reqid, payload = read_frames(s, SIGN_REPLY)
    assert reqid == 7
    status = payload[0]
    elen = struct.unpack(">I", payload[1:5])[0]
    assert status == SIGN_OK and payload[5:5 + elen] == b"\0"
    pos = 5 + elen
    n = struct.unpack(">I", payload[pos:pos + 4])[0]
    pos += 4
    headers = []
    for _ in range(n):
        ln = struct.unpack(">I", payload[pos:pos + 4])[0]
        headers.append(payload[pos + 4:pos + 4 + ln - 1])
        pos += 4 + ln
    assert pos == len(payload) and n == 2
    for h in headers:
        assert h.startswith(b"DKIM-Signature: v=1; ")
        assert not h.endswith(b"\r\n")
    # rsa folded with b= on its own line; ed25519 unfolded (see signer.c).
    assert b"\r\n\t" in headers[0] and b";\r\n\tb=" in headers[0]
    assert b"\r\n" not in headers[1] and b"a=ed25519-sha256" in headers[1]
    verify_all(b"".join(h + b"\r\n" for h in headers) + MESSAGE, dns, 2)


# ---- ternctl dkim ----

def test_dkim_check_ok(signing):
    t, dns = signing(start=False)
    r = t.ternctl("dkim", "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "example.test s1: ok (rsa-sha256, 2048 bits)" in r.stdout
    assert "example.test s2: ok (ed25519-sha256, 256 bits)" in r.stdout
    assert t.ternctl("dkim", "check", "example.test").returncode == 0


def test_dkim_check_reads_dns_servers_as_the_daemons_do(signing):
    """"127.0.0.1:5353" is read as "127.0.0.1@5353" by tern-smtp, and
    by ternctl dkim check too; a value that is no address is refused by
    check-config, with its line, before any daemon trips over it."""
    t, dns = signing(start=False)
    t.sections["delivery"] = {"dns_servers": f"127.0.0.1:{dns.port}"}
    t.write_config()
    r = t.ternctl("dkim", "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "example.test s1: ok (rsa-sha256, 2048 bits)" in r.stdout
    t.sections["delivery"] = {"dns_servers": f"127.0.0.1:{dns.port} garbage!!"}
    t.write_config()
    r = t.ternctl("check-config")
    assert r.returncode != 0
    assert re.search(r"tern\.conf:\d+: \[delivery\] dns_servers: 'garbage!!' "
                     r"is not a resolver address", r.stderr), r.stderr


def test_dkim_check_mismatch_missing_and_bad_key(tern, test_dir):
    t = tern()
    keys = os.path.join(test_dir, "keys")
    os.makedirs(keys)
    a, b, c = (os.path.join(keys, f"{n}.pem") for n in "abc")
    keygen(t, "example.test", "s1", a)
    other = keygen(t, "example.test", "s1", b)       # published, not used
    keygen(t, "example.test", "s2", c, "--algorithm", "ed25519", )
    dns = ternlib.Dns([txt_option(other)], test_dir)
    try:
        t.sections["delivery"] = {"dns_servers": dns.server}
        t.sections["domain example.test"] = {
            "dkim_selector": "s1 s2", "dkim_key": f"{a} {c}"}
        t.sections["domain gone.test"] = {
            "dkim_selector": "x", "dkim_key": os.path.join(keys, "gone.pem")}
        t.write_config()
        r = t.ternctl("dkim", "check")
        assert r.returncode == 1
        assert "example.test s1: mismatch" in r.stdout, r.stdout
        assert "example.test s2: missing record s2._domainkey.example.test" \
            in r.stdout, r.stdout
        assert "gone.test x: key problem: cannot read" in r.stdout, r.stdout
        r = t.ternctl("dkim", "check", "nowhere.test")
        assert r.returncode == 1 and "not a [domain]" in r.stderr
    finally:
        dns.stop()


def test_dkim_keygen_options(tern, test_dir):
    t = tern()
    out = os.path.join(test_dir, "k.pem")
    line = keygen(t, "example.test", "big", out, "--bits", "3072")
    assert line.startswith('big._domainkey.example.test. IN TXT "v=DKIM1; '
                           'k=rsa; p=')
    r = subprocess.run(["openssl", "pkey", "-in", out, "-noout", "-text"],
                       capture_output=True, text=True)
    assert "3072 bit" in r.stdout
    # Never overwrites a key.
    r = t.ternctl("dkim", "keygen", "example.test", "big", "--out", out)
    assert r.returncode != 0 and "File exists" in r.stderr
    for bad in (["--bits", "1024"], ["--algorithm", "dsa"], ["--bits"]):
        r = t.ternctl("dkim", "keygen", "example.test", "s", "--out",
                      os.path.join(test_dir, "x.pem"), *bad)
        assert r.returncode == 2, bad
    assert not os.path.exists(os.path.join(test_dir, "x.pem"))
    # Without --out the key goes where the config says.
    conf_key = os.path.join(test_dir, "conf.pem")
    t.sections["domain example.test"] = {"dkim_selector": "c1",
                                         "dkim_key": conf_key}
    t.write_config()
    r = t.ternctl("dkim", "keygen", "example.test", "c1",
                  "--algorithm", "ed25519")
    assert r.returncode == 0 and os.path.exists(conf_key), r.stderr
    assert re.fullmatch(r'c1\._domainkey\.example\.test\. IN TXT '
                        r'"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}="\n',
                        r.stdout)


def test_dkim_check_with_dns_down(tern, test_dir):
    """No DNS server answers: a failed lookup, never "missing record"
    (which would send the operator to publish a key that is there)."""
    t = tern()
    key = os.path.join(test_dir, "k.pem")
    keygen(t, "example.test", "s1", key)
    t.sections["delivery"] = {
        "dns_servers": f"127.0.0.1@{ternlib.free_port()}"}
    t.sections["domain example.test"] = {"dkim_selector": "s1",
                                         "dkim_key": key}
    t.write_config()
    r = t.ternctl("dkim", "check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "example.test s1: lookup of s1._domainkey.example.test failed" \
        in r.stdout, r.stdout
    assert "missing record" not in r.stdout
