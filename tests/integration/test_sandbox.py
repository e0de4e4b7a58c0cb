"""The Landlock sandbox of tern-smtp, tern-bounce, tern-smtpd and
tern-signer (src/lib/sandbox.c), seen from inside the running daemons: an
LD_PRELOAD probe (tests/tools/sandbox_probe.c) tries, from the daemon's
event loop, what a compromised daemon would try -- open the queue's
data.mdb for writing, read a DKIM key, create a file in /tmp, open
run_dir/private, connect to a local TCP service, plainly and by TCP Fast
Open (which Landlock's connect rule does not see), send a UDP datagram,
open a netlink socket (Landlock has no rule for either) -- and records the
kernel's answers. tern-qmgr (not sandboxed, same user) runs the same probe
as the control: there every try succeeds, so a refusal in the others is
the sandbox's, not the file modes'. Mail flows meanwhile: submission, DKIM
signing, STARTTLS delivery through dnsmasq, a DSN from tern-bounce. Then
tern-qmgr's refusal of changes from a peer that cannot show it is ternctl
or tern-bounce."""
import os
import socket
import ssl
import struct
import subprocess

import pytest

import ternlib
from ipcdefs import IPC_VERSION
from ternlib import Dns, free_port_on, qmgr_fill, wait_for
from test_bounce import submit
from test_delivery import rcpt_results, setup_tern, simple_dns, tls_sink
from test_e2e import dkim_key

DEST_HOST = "127.0.0.3"		# MX of dest.test, the recipients (STARTTLS)
SENDER_HOST = "127.0.0.4"	# MX of example.test, where DSNs go


def landlock_abi():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))


def build_probe(test_dir):
    probe = os.path.join(test_dir, "sandbox_probe.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", probe,
                    os.path.join(ternlib.SRC_DIR, "tests/tools/sandbox_probe.c"),
                    "-ldl"], check=True)
    out = os.path.join(test_dir, "probe")
    os.mkdir(out)
    os.chmod(out, 0o777)
    return probe, out


def probe_env(probe, out, **paths):
    env = {"LD_PRELOAD": probe, "TERN_PROBE_DIR": out,
           # the probe comes before the sanitizer runtime
           "ASAN_OPTIONS": ternlib.daemon_env()["ASAN_OPTIONS"] +
           ":verify_asan_link_order=0"}
    for k, v in paths.items():
        env["TERN_PROBE_" + k.upper()] = str(v)
    return env


def probe_results(t, out, daemon):
    """Triggers the probe and returns {pid: {try: answer}} for daemon."""
    open(os.path.join(out, "go"), "w").close()
    pids = t.pids_of(daemon)
    assert pids, f"no tern-{daemon} runs"

    def read():
        res = {}
        for pid in pids:
            try:
                with open(os.path.join(out, f"tern-{daemon}.{pid}")) as f:
                    lines = f.read().splitlines()
            except FileNotFoundError:
                return None
            if "end" not in lines:
                return None
            res[pid] = dict(l.split("=", 1) for l in lines if "=" in l)
        return res
    return wait_for(read, 15, what=f"the probe's answers from tern-{daemon}")


def local_service():
    """A listening TCP socket on 127.0.0.1 (a local service a compromised
    daemon might reach: a database, an admin API)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def test_abi_is_available():
    """The machine the tests run on has Landlock with TCP rules (ABI 4+):
    the tests below would prove nothing otherwise."""
    assert landlock_abi() >= 4


def test_agents_are_confined_while_mail_flows(tern, sinks, test_dir):
    probe, out = build_probe(test_dir)
    port = free_port_on([DEST_HOST, SENDER_HOST])
    cert, key_pem = ternlib.tls_files(test_dir, cn="mx.dest.test")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key_pem)

    def refuse(address):
        return "550 5.1.1 no such user here" if address.startswith("gone@") \
            else None
    dest = sinks(host=DEST_HOST, port=port, rcpt_reply=refuse,
                 tls_context=ctx, require_starttls=True)
    home = sinks(host=SENDER_HOST, port=port)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{DEST_HOST}",
               "mx-host=example.test,mx.example.test,10",
               f"host-record=mx.example.test,{SENDER_HOST}"], test_dir)
    dkim, _record = dkim_key(test_dir)
    service = local_service()
    t = tern({
        "server": {"verbose": "yes"},
        "delivery": {"dns_servers": dns.server, "smtp_port": str(port),
                     "tls": "opportunistic", "retry_schedule": "1s",
                     "agents": "2"},
        "domain example.test": {"dkim_selector": "s1", "dkim_key": dkim},
    })
    sub = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    data_mdb = os.path.join(t.queue_dir, "data.mdb")
    private = os.path.join(t.run_dir, "private")
    t.start(extra_env=probe_env(
        probe, out, write=data_mdb, read=dkim, create_dir="/tmp",
        connect_port=service.getsockname()[1], proof=private,
        # a DSN handed to tern-cleanup, a forged message to tern-signer
        cleanup_sock=os.path.join(private, "cleanup"),
        cleanup_proof=os.path.join(t.queue_dir, "verp.key"),
        signer_sock=os.path.join(private, "signer"),
        signer_domain="example.test", ipc_version=IPC_VERSION))
    try:
        submit(sub, "user@dest.test")
        submit(sub, "gone@dest.test")
        got = dest.wait_messages(1, timeout=40)[0]
        assert got["tls"] is True and got["to"] == ["user@dest.test"]
        assert b"DKIM-Signature:" in got["data"]
        dsn = home.wait_messages(1, timeout=40)[0]
        assert dsn["from"] in ("", "<>") and dsn["to"] == ["app@example.test"]
        assert b"gone@dest.test" in dsn["data"]
        t.wait_log(r"tern/smtp\[\d+\]: sandbox on \(Landlock ABI \d+\)",
                   count=2)
        t.wait_log(r"tern/bounce\[\d+\]: sandbox on \(Landlock ABI \d+\)")

        # The control: the same tries succeed in tern-qmgr, which runs
        # as the same user without a sandbox.
        # It hands tern-cleanup a DSN with a descriptor of verp.key and
        # has a message signed with one of run_dir/private: both taken.
        control, = probe_results(t, out, "qmgr").values()
        assert control == {"main_thread": "yes", "write": "OK", "read": "OK",
                           "create": "OK", "connect": "OK", "proof": "OK",
                           "fastopen": "OK", "udp": "OK", "netlink": "OK",
                           "cleanup": "250", "signer": "signed"}, control
        for daemon in ("smtp", "bounce"):
            res = probe_results(t, out, daemon)
            assert len(res) == (2 if daemon == "smtp" else 1), res
            for pid, r in res.items():
                # Fast Open fails as if it were off (seccomp: Landlock
                # alone would let it connect). Landlock cannot stop the
                # connects to tern-cleanup and tern-signer; they refuse
                # what only an O_PATH descriptor vouches for (peer_proof.h).
                # tern-smtp needs IP sockets (UDP for DNS), tern-bounce
                # may create Unix sockets only.
                ip = {"fastopen": "EOPNOTSUPP", "udp": "OK"} \
                    if daemon == "smtp" else \
                    {"fastopen": "EACCES", "udp": "EACCES"}
                assert r == {"main_thread": "yes", "write": "EACCES",
                             "read": "EACCES", "create": "EACCES",
                             "proof": "EACCES",
                             "connect": "EACCES", "netlink": "EACCES",
                             "cleanup": "451",
                             "signer": "closed", **ip}, (daemon, pid, r)
        t.wait_log(r"tern/cleanup\[\d+\]: warning: NOQUEUE: reject: MAIL from "
                   r"pid \d+ on the private socket claiming source bounce "
                   r"\(sender=<>\): no descriptor of queue_dir/verp.key",
                   count=3)
        t.wait_log(r"tern/signer\[\d+\]: warning: refused SIGN_BEGIN from "
                   r"pid \d+: no descriptor of run_dir/private", count=3)

        # Mail still flows after the tries.
        submit(sub, "again@dest.test")
        dest.wait_messages(2, timeout=40)
    finally:
        service.close()
        dns.stop()


def hashed_ca_dir(test_dir, cert):
    """A trust store as Debian lays it out: a directory of hashed names
    linking to the certificate kept in another directory."""
    store = os.path.join(test_dir, "certs")
    shared = os.path.join(test_dir, "share", "ca")
    os.makedirs(store)
    os.makedirs(shared)
    real = os.path.join(shared, "test-ca.crt")
    with open(cert, "rb") as src, open(real, "wb") as dst:
        dst.write(src.read())
    os.symlink(real, os.path.join(store, "test-ca.pem"))
    subprocess.run(["openssl", "rehash", store], check=True,
                   capture_output=True)
    for d in (test_dir, os.path.dirname(shared), shared, store):
        os.chmod(d, 0o755)
    return store


def test_trust_store_is_read_per_handshake_inside_the_sandbox(
        tern, sinks, dns, test_dir):
    """Without tls_ca_file, OpenSSL looks the CA up in the system store's
    hashed directory (here SSL_CERT_DIR) during each handshake, long after
    the sandbox is on: that directory and the one its links point into
    stay readable, so required TLS still verifies."""
    port = free_port_on(["127.0.0.2"])
    d = simple_dns(dns)
    sink, cert = tls_sink(sinks, test_dir, port)
    store = hashed_ca_dir(test_dir, cert)
    t, q = setup_tern(tern, d.server, port, tls="required")
    qid, = q.queue(["tls@example.test"])
    t.start(extra_env={"SSL_CERT_DIR": store})
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 250, r
    assert sink.wait_messages(1)[0]["tls"] is True
    t.wait_log(r"Trusted TLS connection established to mx1.example.test")
    t.wait_log(r"tern/smtp\[\d+\]: sandbox on")


def test_dns_over_tcp_inside_the_sandbox(tern, sinks, dns, test_dir):
    """An MX answer too large for UDP comes truncated; unbound asks again
    over TCP (Fast Open refused, a plain connect), to the resolver's port,
    which the sandbox allows (and only that port and smtp_port)."""
    port = free_port_on(["127.0.0.2"])
    records = [f"mx-host=big.test,mx-{i:02d}-with-a-long-name-for-size.big.test,"
               f"{10 + i}" for i in range(40)]  # > 1232 bytes, < 64 records
    records.append("host-record=mx-00-with-a-long-name-for-size.big.test,"
                   "127.0.0.2")
    d = dns(records)
    sink = sinks(host="127.0.0.2", port=port)
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["someone@big.test"])
    t.start()
    q.job(qid, "big.test")
    r, = rcpt_results(q.wait_results(1, timeout=30))
    assert r["code"] == 250, r
    assert r["host"] == "mx-00-with-a-long-name-for-size.big.test", r
    assert sink.wait_messages(1)[0]["to"] == ["someone@big.test"]
    t.wait_log(r"tern/smtp\[\d+\]: sandbox on")


def start_as_tern(t, extra_env):
    """Starts t's ternd as the tern user, as a development run would be
    (no root: no chroot for tern-smtpd and tern-signer, whose sandbox is
    then all that stands between them and the files)."""
    import pwd
    import subprocess as sp
    tern_user = pwd.getpwnam("tern")
    t.write_config()
    t._link_daemons()
    sp.run(["chown", "-R", "tern:", t.dir], check=True)
    t.log = open(t.log_path, "ab")
    os.chown(t.log_path, tern_user.pw_uid, tern_user.pw_gid)
    t.proc = sp.Popen(
        [os.path.join(ternlib.BUILD_DIR, "src/master/ternd"), "-f", "-c",
         t.config_path], stdout=t.log, stderr=sp.STDOUT,
        env={**ternlib.daemon_env(), **extra_env}, start_new_session=True,
        user=tern_user.pw_uid, group=tern_user.pw_gid, extra_groups=[])
    for port in t.ports.values():
        ternlib.wait_port("127.0.0.1", port)
    t.wait_log(r"daemon started -- version")


@pytest.mark.skipif(not ternlib.IS_ROOT, reason="needs root to run as tern")
def test_unjailed_smtpd_and_signer_are_confined(tern, sinks, test_dir):
    """Started without root, tern-smtpd and tern-signer are not chrooted;
    their sandbox alone refuses them the queue, the keys (the signer's
    were read at start) and /tmp, while a message is signed and sent."""
    probe, out = build_probe(test_dir)
    sink = sinks(host=DEST_HOST)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{DEST_HOST}"], test_dir)
    dkim, _record = dkim_key(test_dir)
    service = local_service()
    t = tern({
        "server": {"verbose": "yes"},
        "delivery": {"dns_servers": dns.server, "smtp_port": str(sink.port),
                     "tls": "none", "agents": "1"},
        "domain example.test": {"dkim_selector": "s1", "dkim_key": dkim},
    })
    sub = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    start_as_tern(t, probe_env(
        probe, out, write=os.path.join(t.queue_dir, "data.mdb"), read=dkim,
        create_dir="/tmp", connect_port=service.getsockname()[1],
        proof=os.path.join(t.run_dir, "private")))
    try:
        submit(sub, "user@dest.test")
        got = sink.wait_messages(1, timeout=40)[0]
        assert b"DKIM-Signature:" in got["data"]
        for daemon in ("smtpd", "signer"):
            t.wait_log(rf"tern/{daemon}\[\d+\]: sandbox on \(Landlock ABI")
        control, = probe_results(t, out, "qmgr").values()
        assert control == {"main_thread": "yes", "write": "OK", "read": "OK",
                           "create": "OK", "connect": "OK", "proof": "OK",
                           "fastopen": "OK", "udp": "OK",
                           "netlink": "OK"}, control
        for daemon in ("smtpd", "signer", "smtp", "bounce"):
            ip = {"fastopen": "EOPNOTSUPP", "udp": "OK"} \
                if daemon == "smtp" else \
                {"fastopen": "EACCES", "udp": "EACCES"}
            for pid, r in probe_results(t, out, daemon).items():
                assert r == {"main_thread": "yes", "write": "EACCES",
                             "read": "EACCES", "create": "EACCES",
                             "proof": "EACCES",
                             "connect": "EACCES", "netlink": "EACCES",
                             **ip}, (daemon, pid, r)
        t.wait_log(r"tern/smtpd\[\d+\]: sandbox on \(Landlock ABI \d+\): "
                   r"\d+ readable path\(s\), Unix sockets only")
        submit(sub, "again@dest.test")
        sink.wait_messages(2, timeout=40)
    finally:
        service.close()
        dns.stop()


# ---- tern-qmgr tells ternctl and tern-bounce from the agents ----

IPC_F_FD = 0x0001
IPC_HELLO, IPC_BOUNCE_READY = 0x0001, 0x0501
IPC_CTL_DELETE, IPC_CTL_REPLY = 0x0602, 0x0607


def frame(typ, reqid, payload, flags=0):
    return struct.pack(">IHHI", len(payload), typ, flags, reqid) + payload


def put_str(s):
    b = s.encode() + b"\0"
    return struct.pack(">I", len(b)) + b


def qmgr_request(t, typ, payload, fd=None, name="ternctl"):
    """Sends HELLO and one request to tern-qmgr, the request with fd if
    given; returns the type of the first frame back after qmgr's HELLO, or
    None when qmgr closed the connection."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(os.path.join(t.run_dir, "private", "qmgr"))
    s.sendall(frame(IPC_HELLO, 0, struct.pack(">I", IPC_VERSION) +
                    put_str(name)))
    if fd is None:
        s.sendall(frame(typ, 1, payload))
    else:
        socket.send_fds(s, [frame(typ, 1, payload, IPC_F_FD)], [fd])
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            frames = []
            while len(data) >= 12:
                length, typ_back, _flags, _reqid = struct.unpack(
                    ">IHHI", data[:12])
                if len(data) < 12 + length:
                    break
                frames.append(typ_back)
                data = data[12 + length:]
            other = [f for f in frames if f != IPC_HELLO]
            if other:
                return other[0]
    finally:
        s.close()
    return None


def test_qmgr_takes_changes_only_from_who_shows_it_is_ternctl(tern):
    """tern-smtp runs as tern's user, as ternctl may: a compromised agent
    could connect to tern-qmgr anew and delete mail, suppress addresses or
    pose as tern-bounce. qmgr takes CTL_* only with a descriptor of
    run_dir/private opened for reading (which ternctl sends and a
    sandboxed daemon cannot open, see the probe above), and BOUNCE_READY
    only with one of queue_dir/verp.key (which tern-bounce opened before
    its sandbox). Anything else is refused and logged."""
    from test_qmgr import start
    t = start(tern)
    qid, = qmgr_fill(t, ["a@ok.test"], n=1, hold=True)
    private = os.path.join(t.run_dir, "private")
    delete = put_str(qid)

    assert qmgr_request(t, IPC_CTL_DELETE, delete) is None
    t.wait_log(r"refused CTL_DELETE from pid \d+: no descriptor of "
               r"run_dir/private came with it, so it is not ternctl")
    # a path-only descriptor (anyone can make one, Landlock or not)
    fd = os.open(private, os.O_PATH)
    try:
        assert qmgr_request(t, IPC_CTL_DELETE, delete, fd) is None
    finally:
        os.close(fd)
    # a real descriptor of another directory
    fd = os.open(t.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert qmgr_request(t, IPC_CTL_DELETE, delete, fd) is None
    finally:
        os.close(fd)
    t.wait_log(r"refused CTL_DELETE from pid", count=3)
    assert t.ternctl("queue", "show", qid).returncode == 0, "deleted anyway"

    assert qmgr_request(t, IPC_BOUNCE_READY, struct.pack(">I", 4),
                        name="bounce") is None
    t.wait_log(r"refused BOUNCE_READY from pid \d+: no descriptor of "
               r"verp.key came with it, so it is not tern-bounce")

    # The real proof is taken: that is what ternctl sends.
    fd = os.open(private, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert qmgr_request(t, IPC_CTL_DELETE, delete, fd) == IPC_CTL_REPLY
    finally:
        os.close(fd)
    wait_for(lambda: t.ternctl("queue", "show", qid).returncode != 0, 10,
             what="the message to be deleted")
    # and ternctl itself still works
    qid2, = qmgr_fill(t, ["b@ok.test"], n=1, hold=True)
    r = t.ternctl("queue", "delete", qid2)
    assert r.returncode == 0, r.stderr


def test_without_landlock_one_warning_and_mail_flows(tern, sinks, test_dir):
    """On a kernel without Landlock (here the probe makes its system
    calls fail with ENOSYS) each sandboxed daemon says so once and runs
    as before: best effort, as a missing chroot would not stop tern."""
    probe, out = build_probe(test_dir)
    sink = sinks(host=DEST_HOST)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{DEST_HOST}"], test_dir)
    t = tern({
        "server": {"verbose": "yes"},
        "delivery": {"dns_servers": dns.server, "smtp_port": str(sink.port),
                     "tls": "none", "agents": "2"},
        "domain example.test": {},
    })
    sub = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    env = probe_env(probe, out, create_dir="/tmp")
    env["TERN_PROBE_NO_LANDLOCK"] = "1"
    t.start(extra_env=env)
    try:
        submit(sub, "user@dest.test")
        sink.wait_messages(1, timeout=40)
        for daemon, n in (("smtp", 2), ("bounce", 1), ("smtpd", 1),
                          ("signer", 1)):
            t.wait_log(rf"tern/{daemon}\[\d+\]: warning: the kernel has no "
                       r"Landlock \(Function not implemented\): running "
                       r"without a sandbox", count=n)
        for pid, r in probe_results(t, out, "smtp").items():
            assert r["create"] == "OK", (pid, r)
        assert "sandbox on" not in t.log_text()
    finally:
        dns.stop()


@pytest.mark.parametrize("abi", [1, 3])
def test_older_landlock_abi_still_confines(tern, sinks, test_dir, abi):
    """On a kernel with Landlock but without its TCP rules (ABI 1 to 3;
    here the probe answers the version question with an older number
    and the daemons build the older rulesets, which this kernel takes)
    the file system stays closed, tern-smtp may connect anywhere, and
    the daemons that need no IP get none, by the seccomp filter."""
    probe, out = build_probe(test_dir)
    sink = sinks(host=DEST_HOST)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{DEST_HOST}"], test_dir)
    service = local_service()
    t = tern({
        "server": {"verbose": "yes"},
        "delivery": {"dns_servers": dns.server, "smtp_port": str(sink.port),
                     "tls": "none", "agents": "1"},
        "domain example.test": {},
    })
    sub = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    env = probe_env(probe, out, write=os.path.join(t.queue_dir, "data.mdb"),
                    create_dir="/tmp", connect_port=service.getsockname()[1])
    env["TERN_PROBE_LANDLOCK_ABI"] = str(abi)
    t.start(extra_env=env)
    try:
        submit(sub, "user@dest.test")
        sink.wait_messages(1, timeout=40)
        t.wait_log(rf"tern/smtp\[\d+\]: sandbox on \(Landlock ABI {abi}\): "
                   r".*TCP not restricted \(that needs ABI 4\)")
        t.wait_log(rf"tern/bounce\[\d+\]: sandbox on \(Landlock ABI {abi}\): "
                   r".*Unix sockets only")
        for daemon in ("smtp", "bounce"):
            ip = {"connect": "OK", "fastopen": "EOPNOTSUPP", "udp": "OK"} \
                if daemon == "smtp" else \
                {"connect": "EACCES", "fastopen": "EACCES", "udp": "EACCES"}
            for pid, r in probe_results(t, out, daemon).items():
                assert r == {"main_thread": "yes", "write": "EACCES",
                             "create": "EACCES", "netlink": "EACCES",
                             **ip}, (daemon, pid, r)
        submit(sub, "again@dest.test")
        sink.wait_messages(2, timeout=40)
    finally:
        service.close()
        dns.stop()


# ---- tern-cleanup and tern-signer tell tern's programs from the agents ----

def test_cleanup_and_signer_take_only_who_shows_it(tern, test_dir):
    """Landlock cannot stop tern-smtp (tern's user) from connecting to
    run_dir/private/cleanup and private/signer. tern-cleanup takes a DSN
    (source bounce, whose sender is not checked) on its private socket
    only with a descriptor of queue_dir/verp.key, any other source only
    with one of run_dir/private; tern-signer signs only for who showed
    run_dir/private (tern-cleanup). The refusals from inside a sandboxed
    tern-smtp are in test_agents_are_confined_while_mail_flows; here an
    unsandboxed client shows the right descriptor, or a wrong one."""
    from test_cleanup import CLIENT, read_queue
    from test_signer import SIGN_CLIENT
    dkim, _record = dkim_key(test_dir)
    t = tern({"domain example.test": {"dkim_selector": "s1",
                                      "dkim_key": dkim}})
    t.start()
    private = os.path.join(t.run_dir, "private")
    verp_key = os.path.join(t.queue_dir, "verp.key")
    wait_for(lambda: os.path.exists(verp_key), what="the VERP key")
    msg = os.path.join(test_dir, "msg.eml")
    with open(msg, "wb") as f:
        f.write(b"From: <app@example.test>\r\nTo: <x@dest.test>\r\n"
                b"Subject: hi\r\n\r\nhello\r\n")

    def cleanup(source, proof):
        return subprocess.run(
            [CLIENT, "-s", str(source), "-f", "" if source == 4 else
             "app@example.test", "-r", "x@dest.test", "-P", proof,
             os.path.join(private, "cleanup"), msg],
            capture_output=True, text=True, timeout=30,
            env=ternlib.daemon_env())

    for source, proof in ((4, ""), (4, private), (4, t.dir), (3, ""),
                          (3, verp_key), (1, "")):
        r = cleanup(source, proof)
        assert r.returncode != 0 and "BEGIN 451 4.7.0" in r.stdout, \
            (source, proof, r.stdout, r.stderr)
    t.wait_log(r"NOQUEUE: reject: MAIL from pid \d+ on the private socket "
               r"claiming source bounce", count=3)
    t.wait_log(r"claiming source sendmail \(sender=<app@example.test>\): "
               r"no descriptor of run_dir/private", count=2)
    assert read_queue(t.queue_dir)[0] == {}, "queued anyway"
    # the right descriptors are taken, and the message is signed
    for source, proof in ((4, verp_key), (3, private)):
        r = cleanup(source, proof)
        assert r.returncode == 0 and "END 250" in r.stdout, \
            (source, proof, r.stdout, r.stderr)
    msgs = read_queue(t.queue_dir)[0]
    assert sorted(m["msg"]["source"] for m in msgs.values()) == [3, 4]
    assert all(b"DKIM-Signature:" in m["content"] for m in msgs.values())

    def sign(proof):
        return subprocess.run(
            [SIGN_CLIENT, "-t", "5", "-P", proof,
             os.path.join(private, "signer"), "example.test", msg],
            capture_output=True, text=True, timeout=60,
            env=ternlib.daemon_env())
    for proof in ("", t.dir, verp_key):
        r = sign(proof)
        assert "status=0" not in r.stderr and \
            "DKIM-Signature" not in r.stdout, (proof, r.stdout, r.stderr)
    t.wait_log(r"refused SIGN_BEGIN from pid \d+: no descriptor of "
               r"run_dir/private came with it, so it is not tern-cleanup",
               count=3)
    r = sign(private)
    assert r.returncode == 0 and "status=0" in r.stderr, r.stderr
    assert r.stdout.startswith("DKIM-Signature:"), r.stdout
