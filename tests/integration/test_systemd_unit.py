"""init/tern.service: ternd runs under exactly the capabilities the unit
grants. The test reads CapabilityBoundingSet= (and AmbientCapabilities=,
User=, Group= when set) from the unit in the source tree and starts ternd
from the build tree under them with setpriv, as systemd would: every
daemon starts, a message submitted on a privileged port is delivered to
an aiosmtpd sink, the unit's ExecReload (check-config, SIGHUP) binds a
new privileged port, ternd stops cleanly and starts again over the
directories it made (then owned by tern's user). Removing a capability
the unit needs makes this test fail; the unit grants no other."""
import os
import re
import shutil
import smtplib
import socket
import subprocess

import pytest

import ternlib
from ternlib import BUILD_DIR, IS_ROOT, SRC_DIR, Dns, wait_for

UNIT = os.path.join(SRC_DIR, "init", "tern.service.in")
SINK_HOST = "127.0.0.3"		# not an address tern listens on
DAEMONS = ("signer", "cleanup", "smtpd", "qmgr", "bounce", "smtp", "pickup")


def unit_settings(path=UNIT):
    """The [Service] settings of the unit: name -> list of values, in order
    (a setting given twice has two values)."""
    settings = {}
    section = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section == "Service":
                key, _, value = line.partition("=")
                settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def capability_list(values):
    """systemd's capability list (several lines add up; an empty one
    resets) as setpriv names: ["net_bind_service", ...]."""
    caps = []
    for v in values:
        if v == "":
            caps = []
            continue
        # "~CAP_X" (all but) would need the inverse; the unit does not use it.
        assert not v.startswith("~"), v
        caps += [c.lower().removeprefix("cap_") for c in v.split()]
    return caps


def setpriv_args(settings):
    """setpriv's options for the unit's user and capabilities."""
    bounding = capability_list(settings.get("CapabilityBoundingSet", []))
    assert bounding, "the unit sets no CapabilityBoundingSet="
    args = ["setpriv", "--bounding-set",
            ",".join(["-all"] + ["+" + c for c in bounding]),
            "--inh-caps", "-all"]
    ambient = capability_list(settings.get("AmbientCapabilities", []))
    if ambient:
        args[-1] = ",".join(["-all"] + ["+" + c for c in ambient])
        args += ["--ambient-caps", args[-1]]
    if settings.get("User"):
        args += ["--reuid", settings["User"][-1], "--init-groups"]
        if not settings.get("Group"):
            import pwd
            args += ["--regid", str(pwd.getpwnam(settings["User"][-1]).pw_gid)]
    if settings.get("Group"):
        args += ["--regid", settings["Group"][-1]]
    # systemd implies NoNewPrivileges= for a unit with MemoryDenyWriteExecute=
    # (and the like) and no CAP_SYS_ADMIN.
    if "sys_admin" not in bounding or \
            settings.get("NoNewPrivileges", ["no"])[-1] == "yes":
        args.append("--no-new-privs")
    return args, bounding


def free_privileged_port(host="127.0.0.1", avoid=()):
    """A free TCP port below 1024 (only CAP_NET_BIND_SERVICE may bind it)."""
    for port in range(700, 1024):
        if port in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 1024")


def submit(port, rcpt, subject):
    msg = (f"From: App <app@example.test>\r\nTo: <{rcpt}>\r\n"
           f"Subject: {subject}\r\n\r\nA message from the app.\r\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("app.example.test")
        code, text = s.mail("app@example.test")
        if code == 250:
            code, text = s.rcpt(rcpt)
        if code == 250:
            code, text = s.data(msg.encode())
        return code, text.decode()


def start_under_unit(t, prefix):
    """Starts ternd -f under the unit's credentials, after its
    ExecStartPre (ternctl check-config) under the same."""
    t.write_config()
    t._link_daemons()
    r = subprocess.run(prefix + [os.path.join(BUILD_DIR, "src/ctl/ternctl"),
                                 "-c", t.config_path, "check-config"],
                       capture_output=True, text=True, env=ternlib.daemon_env(),
                       timeout=60)
    assert r.returncode == 0, r.stderr
    started = len(re.findall("daemon started -- version", t.log_text()))
    t.log = open(t.log_path, "ab")
    t.proc = subprocess.Popen(
        prefix + [os.path.join(BUILD_DIR, "src/master/ternd"), "-f", "-c",
                  t.config_path],
        stdout=t.log, stderr=subprocess.STDOUT, env=ternlib.daemon_env(),
        start_new_session=True)
    for port in t.ports.values():
        ternlib.wait_port("127.0.0.1", port)
    t.wait_log(r"daemon started -- version", count=started + 1)


def daemon_pids(t):
    """{daemon: [pids]} once every daemon runs."""
    def all_up():
        pids = {d: t.pids_of(d) for d in DAEMONS}
        return pids if all(pids.values()) else None
    return wait_for(all_up, 15, what="every daemon to run")


def bounding_set_of(pid):
    """pid's bounding set, or None when it has exited since."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except FileNotFoundError:
        return None
    raise AssertionError("no CapBnd")


def cap_mask(names):
    """The CapBnd bits of capabilities named as setpriv names them."""
    mask = 0
    for n in names:
        out = subprocess.run(["capsh", "--explain=cap_" + n],
                             capture_output=True, text=True).stdout
        m = re.match(r"cap_\w+ \((\d+)\)", out)
        assert m, f"unknown capability {n}: {out}"
        mask |= 1 << int(m.group(1))
    return mask


@pytest.mark.skipif(not IS_ROOT, reason="the unit runs ternd as root")
def test_ternd_runs_under_the_units_capabilities(tern, sinks, test_dir):
    settings = unit_settings()
    prefix, bounding = setpriv_args(settings)
    # As installed (sendmail(1)): tern-pickup opens the maildrop to the
    # group tern-drop, changing modes of what belongs to tern's user.
    if subprocess.run(["getent", "group", "tern-drop"],
                      capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", "tern-drop"], check=True)
    sink = sinks(host=SINK_HOST)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{SINK_HOST}"], test_dir)
    try:
        key = os.path.join(test_dir, "example.test.s1.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519",
                        "-out", key], check=True, capture_output=True)
        os.chmod(key, 0o644)
        t = tern({"delivery": {"dns_servers": dns.server,
                               "smtp_port": str(sink.port), "tls": "none",
                               "retry_schedule": "1s"},
                  "domain example.test": {"dkim_selector": "s1",
                                          "dkim_key": key}})
        port = free_privileged_port()
        t.ports["submission"] = port
        t.sections["listen submission"] = {
            "address": f"127.0.0.1:{port}", "mode": "submission",
            "trusted_networks": "127.0.0.0/8"}
        start_under_unit(t, prefix)
        first = daemon_pids(t)
        # Every process runs under exactly the unit's bounding set.
        want = cap_mask(bounding)
        assert bounding_set_of(t.proc.pid) == want
        for pids in first.values():
            for pid in pids:
                assert bounding_set_of(pid) in (want, None)
        code, text = submit(port, "user@dest.test", "before the reload")
        assert code == 250, text
        sink.wait_messages(1, timeout=30)

        # ExecReload: check-config, then SIGHUP; the reload binds another
        # privileged port and replaces every daemon.
        port2 = free_privileged_port(avoid=(port,))
        t.ports["local"] = port2
        t.sections["listen local"] = {
            "address": f"127.0.0.1:{port2}", "mode": "submission",
            "trusted_networks": "127.0.0.0/8"}
        t.write_config()
        r = subprocess.run(prefix + [os.path.join(BUILD_DIR, "src/ctl/ternctl"),
                                     "-c", t.config_path, "check-config"],
                           capture_output=True, text=True,
                           env=ternlib.daemon_env(), timeout=60)
        assert r.returncode == 0, r.stderr
        subprocess.run(prefix + ["/bin/kill", "-HUP", str(t.proc.pid)],
                       check=True)
        t.wait_log(r"reload complete", timeout=15)
        ternlib.wait_port("127.0.0.1", port2)

        def replaced():
            now = {d: t.pids_of(d) for d in DAEMONS}
            return all(now[d] and not set(now[d]) & set(first[d])
                       for d in DAEMONS)
        wait_for(replaced, 15, what="every daemon to be replaced")
        code, text = submit(port2, "user@dest.test", "after the reload")
        assert code == 250, text
        sink.wait_messages(2, timeout=30)

        # Stop (KillMode=mixed: ternd stops its daemons itself).
        assert t.stop() == 0
        assert t.group_pids() == []
        assert "stopped" in t.log_text()
        import pwd
        assert os.stat(t.queue_dir).st_uid == pwd.getpwnam("tern").pw_uid
        assert os.stat(t.queue_dir).st_mode & 0o7777 == 0o711

        # Started again over what it made, owned by tern's user by now.
        start_under_unit(t, prefix)
        daemon_pids(t)
        code, text = submit(port, "user@dest.test", "after the restart")
        assert code == 250, text
        sink.wait_messages(3, timeout=30)
        assert t.stop() == 0
        log = t.log_text()
        assert "fatal:" not in log, log[-3000:]
        assert not re.search(r"warning: .*(Operation not permitted|"
                             r"Permission denied)", log), log[-3000:]
    finally:
        dns.stop()


def test_unit_passes_systemd_analyze_verify(test_dir):
    """The unit, with @sbindir@ filled in as make does (pointing at the
    build tree's ternd and ternctl), is one systemd accepts as it is
    (systemd-analyze from tools/deps; systemd need not be running)."""
    assert shutil.which("systemd-analyze"), "tools/deps installs systemd"
    sbin = os.path.join(test_dir, "sbin")
    os.makedirs(sbin)
    os.symlink(os.path.join(BUILD_DIR, "src/master/ternd"),
               os.path.join(sbin, "ternd"))
    os.symlink(os.path.join(BUILD_DIR, "src/ctl/ternctl"),
               os.path.join(sbin, "ternctl"))
    with open(UNIT) as f:
        text = f.read().replace("@sbindir@", sbin)
    assert "@" not in text
    unit = os.path.join(test_dir, "tern.service")
    with open(unit, "w") as f:
        f.write(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", unit],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
