"""Integration test harness for tern: real daemons from the build tree,
real peers (aiosmtpd sinks, dnsmasq), everything on loopback.

A test gets a `tern` factory fixture (see conftest.py), writes the config
sections it needs, starts ternd -f from the build tree and talks to it
with smtplib or raw sockets. Teardown stops every process it started and
fails the test if a sanitizer or a panic was logged.
"""
import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

BUILD_DIR = os.path.abspath(os.environ.get(
    "TERN_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build")))
SRC_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IS_ROOT = os.geteuid() == 0
sys.path.insert(0, os.path.join(SRC_DIR, "tests", "tools"))
from ipcdefs import IPC_VERSION  # noqa: E402  (the doubles' shared module)
# Lines that mean a daemon hit a bug, whatever the test itself checked.
BUG_PATTERNS = re.compile(
    r"ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|panic: ")


def free_port(host="127.0.0.1"):
    """A TCP port that is free on host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_on(hosts):
    """A TCP port free on every address in hosts (for several MX sinks)."""
    for _ in range(200):
        port = free_port(hosts[0])
        ok = True
        for h in hosts[1:]:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no common free port")


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Polls pred() until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_port(host, port, timeout=10.0):
    def up():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False
    wait_for(up, timeout, what=f"{host}:{port} to listen")


def make_test_dir():
    """A fresh directory the daemons' user can use (0755 under /tmp)."""
    d = tempfile.mkdtemp(prefix="tern-test-")
    os.chmod(d, 0o755)
    return d


def daemon_env():
    env = dict(os.environ)
    # Leaks of long-running daemons are checked by unit tests, not here;
    # chrooted daemons cannot run LeakSanitizer (no /proc).
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1:disable_coredump=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env.pop("TERN_CONFIG", None)
    return env


class Tern:
    """One tern instance: its config, its directory, its ternd process."""

    def __init__(self, base_dir, sections=None, extra=""):
        self.dir = base_dir
        self.queue_dir = os.path.join(base_dir, "queue")
        self.run_dir = os.path.join(base_dir, "run")
        self.config_path = os.path.join(base_dir, "tern.conf")
        self.log_path = os.path.join(base_dir, "ternd.log")
        self.proc = None
        self.ports = {}
        self.sections = {
            "server": {
                "hostname": "mail.tern.test",
                "queue_dir": self.queue_dir,
                "run_dir": self.run_dir,
                "daemon_dir": BUILD_DIR,
                "log": "stderr",
                "shutdown_timeout": "10s",
            },
        }
        if IS_ROOT:
            self.sections["server"]["user"] = "tern"
        for name, keys in (sections or {}).items():
            self.sections.setdefault(name, {}).update(keys)
        self.extra = extra

    # -- configuration --

    def listen(self, name, mode, **keys):
        """Adds a [listen NAME] section on a free loopback port."""
        port = free_port()
        self.ports[name] = port
        sect = {"address": f"127.0.0.1:{port}", "mode": mode}
        sect.update(keys)
        self.sections[f"listen {name}"] = sect
        return port

    def write_config(self):
        lines = []
        for name, keys in self.sections.items():
            lines.append(f"[{name}]")
            for k, v in keys.items():
                lines.append(f"{k} = {v}")
            lines.append("")
        text = "\n".join(lines) + self.extra
        with open(self.config_path, "w") as f:
            f.write(text)
        return self.config_path

    # -- running --

    def start(self, wait=True, args=(), extra_env=None):
        self.write_config()
        daemon_dir = self.sections["server"]["daemon_dir"]
        if daemon_dir == BUILD_DIR:
            self._link_daemons()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BUILD_DIR, "src/master/ternd"), "-f", "-c",
             self.config_path, *args],
            stdout=self.log, stderr=subprocess.STDOUT,
            env={**daemon_env(), **(extra_env or {})},
            start_new_session=True)
        if wait:
            for name, port in self.ports.items():
                wait_port("127.0.0.1", port)
            self.wait_log(r"daemon started -- version", timeout=10)  # not pickup's
            # A forked daemon shows ternd's command line until its exec:
            # pids_of() would miss it on a loaded machine.
            wait_for(lambda: not self._children_before_exec(), 10,
                     what="ternd's children to exec their daemons")
        return self

    def _children_before_exec(self):
        out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            pid, pgid, args = line.split(None, 2)
            if int(pgid) == self.proc.pid and int(pid) != self.proc.pid and \
                    os.path.basename(args.split()[0]) == "ternd":
                return True
        return False

    def _link_daemons(self):
        """daemon_dir must hold tern-* side by side, as when installed:
        link the build tree's daemons into one folder."""
        d = os.path.join(self.dir, "libexec")
        os.makedirs(d, exist_ok=True)
        for root, _dirs, files in os.walk(os.path.join(BUILD_DIR, "src")):
            for f in files:
                p = os.path.join(root, f)
                if f.startswith("tern-") and os.access(p, os.X_OK) and \
                        not f.endswith((".o", ".a")):
                    dst = os.path.join(d, f)
                    if not os.path.exists(dst):
                        os.symlink(p, dst)
        self.sections["server"]["daemon_dir"] = d
        self.write_config()

    def stop(self, timeout=15):
        """SIGTERM to ternd; returns its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("ternd did not stop within %ss" % timeout)

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        # The children die on their own time: until the last one is gone
        # its copy of a listening socket keeps the port (a new ternd on it
        # would get "Address already in use").
        deadline = time.monotonic() + 10
        while self.group_pids() and time.monotonic() < deadline:
            time.sleep(0.05)

    def group_pids(self):
        """Every live process in ternd's process group."""
        if self.proc is None:
            return []
        out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="],
                             capture_output=True, text=True).stdout
        pids = []
        for line in out.splitlines():
            pid, pgid, stat = line.split()
            if int(pgid) == self.proc.pid and not stat.startswith("Z"):
                pids.append(int(pid))
        return pids

    def pids_of(self, daemon):
        """PIDs of a daemon (e.g. "smtpd") in this instance."""
        out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="],
                             capture_output=True, text=True).stdout
        pids = []
        for line in out.splitlines():
            pid, pgid, args = line.split(None, 2)
            if self.proc and int(pgid) == self.proc.pid and \
                    os.path.basename(args.split()[0]) == f"tern-{daemon}":
                pids.append(int(pid))
        return pids

    # -- observing --

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10.0, count=1):
        rx = re.compile(pattern)
        return wait_for(lambda: len(rx.findall(self.log_text())) >= count
                        and rx.findall(self.log_text()), timeout,
                        what=f"log line /{pattern}/")

    def bugs_logged(self):
        return [l for l in self.log_text().splitlines() if BUG_PATTERNS.search(l)]

    def ternctl(self, *args, input=None, check=False, user=None):
        cmd = [os.path.join(BUILD_DIR, "src/ctl/ternctl"), "-c",
               self.config_path, *args]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True,
                           env=daemon_env(), timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"ternctl {args} failed: {r.stderr}")
        return r


class Sink:
    """An aiosmtpd SMTP sink on host:port that records what it receives.
    rcpt_reply(address) and data_reply(envelope) may return a reply line
    ("451 4.3.0 try later") to refuse; None accepts."""

    def __init__(self, host="127.0.0.1", port=None, rcpt_reply=None,
                 data_reply=None, tls_context=None, require_starttls=False,
                 ehlo_hook=None):
        from aiosmtpd.controller import Controller
        self.host = host
        self.port = port or free_port(host)
        self.messages = []
        self.sessions = 0
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address,
                                  rcpt_options):
                if sink.rcpt_reply:
                    r = sink.rcpt_reply(address)
                    if r:
                        return r
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 OK"

            async def handle_DATA(self, server, session, envelope):
                if sink.data_reply:
                    r = sink.data_reply(envelope)
                    if r:
                        return r
                with sink.lock:
                    sink.messages.append({
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "data": envelope.original_content or envelope.content,
                        "tls": session.ssl is not None,
                        "peer": session.peer,
                        "helo": session.host_name,
                    })
                return "250 2.0.0 OK queued"

        kwargs = {}
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = require_starttls
        self.controller = Controller(Handler(), hostname=host, port=self.port,
                                     decode_data=False, **kwargs)
        self.controller.start()

    def stop(self):
        self.controller.stop()

    def wait_messages(self, n, timeout=15.0):
        wait_for(lambda: len(self.messages) >= n, timeout,
                 what=f"{n} message(s) at sink {self.host}:{self.port}")
        return self.messages


class Dns:
    """dnsmasq answering for test zones on 127.0.0.1:<port>.
    records: list of dnsmasq options without the leading dashes, e.g.
    "mx-host=example.test,mx1.example.test,10",
    "host-record=mx1.example.test,127.0.0.2"."""

    def __init__(self, records, base_dir):
        self.port = free_port()
        self.log_path = os.path.join(base_dir, "dnsmasq.log")
        args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                f"--port={self.port}", "--no-resolv", "--no-hosts",
                "--bind-interfaces", "--listen-address=127.0.0.1",
                "--local=/test/", "--log-facility=" + self.log_path,
                "--log-queries", "--pid-file="]
        if IS_ROOT:
            args.append("--user=root")
        args += ["--" + r for r in records]
        exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.proc = subprocess.Popen([exe] + args[1:], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self._wait_ready()

    def _wait_ready(self):
        import dns_probe
        wait_for(lambda: self.proc.poll() is not None or
                 dns_probe.answers("127.0.0.1", self.port),
                 5, what="dnsmasq to answer")
        if self.proc.poll() is not None:
            raise RuntimeError("dnsmasq failed: " + self.proc.stderr.read().decode())

    @property
    def server(self):
        """The value for [delivery] dns_servers."""
        return f"127.0.0.1@{self.port}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def tls_files(base_dir, cn="mail.tern.test"):
    """A self-signed certificate and key for TLS listeners and sinks."""
    cert = os.path.join(base_dir, "cert.pem")
    key = os.path.join(base_dir, "key.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                        "-subj", f"/CN={cn}", "-addext",
                        f"subjectAltName=DNS:{cn}"],
                       check=True, capture_output=True)
        os.chmod(key, 0o644)
    return cert, key


def client_tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- tern-cleanup test double (tests/tools/test_cleanup.c) --

def use_test_cleanup(t, rules=""):
    """Makes t run the test double as tern-cleanup: it answers per rules
    (see test_cleanup.c) and records each transaction in t.dir."""
    d = os.path.join(t.dir, "libexec")
    os.makedirs(d, exist_ok=True)
    dst = os.path.join(d, "tern-cleanup")
    if not os.path.lexists(dst):
        os.symlink(os.path.join(BUILD_DIR, "tests/tools/test_cleanup"), dst)
    set_cleanup_rules(t, rules)
    return t


def set_cleanup_rules(t, rules):
    with open(os.path.join(t.dir, "test-cleanup.rules"), "w") as f:
        f.write(rules)


def cleanup_records(t):
    """The transactions the double saw, oldest first (list of dicts)."""
    import json
    try:
        with open(os.path.join(t.dir, "test-cleanup.log"), "rb") as f:
            return [json.loads(l.decode("utf-8", "replace")) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def cleanup_commits(t):
    return [r for r in cleanup_records(t) if r["event"] == "commit"]


def cleanup_message(t, qid):
    """The content the double committed under qid (bytes)."""
    with open(os.path.join(t.dir, "test-cleanup-msgs", qid + ".eml"), "rb") as f:
        return f.read()


def start_smtpd(t, rules=""):
    """Starts t with the cleanup double and waits until smtpd reached it."""
    use_test_cleanup(t, rules)
    t.start()
    t.wait_log(r"smtpd.*connected to cleanup")
    return t
# ---- the delivery agent (tern-smtp) with the tern-qmgr test double ----

def use_qmgr_double(tern):
    """Makes tern's daemon_dir hold the build tree's daemons, with
    tests/tools/test_qmgr installed as tern-qmgr (see test_qmgr.c)."""
    d = os.path.join(tern.dir, "libexec-qmgr-double")
    os.makedirs(d, exist_ok=True)
    for root, _dirs, files in os.walk(os.path.join(BUILD_DIR, "src")):
        for f in files:
            p = os.path.join(root, f)
            if f.startswith("tern-") and f != "tern-qmgr" and \
                    os.access(p, os.X_OK) and not f.endswith((".o", ".a")):
                dst = os.path.join(d, f)
                if not os.path.exists(dst):
                    os.symlink(p, dst)
    dst = os.path.join(d, "tern-qmgr")
    if not os.path.exists(dst):
        os.symlink(os.path.join(BUILD_DIR, "tests/tools/test_qmgr"), dst)
    tern.sections["server"]["daemon_dir"] = d
    return QmgrDouble(tern)


class QmgrDouble:
    """Hands jobs to tern-smtp through the test double and reads results."""

    def __init__(self, tern):
        self.tern = tern
        self.jobs_path = os.path.join(tern.dir, "qmgr-jobs.jsonl")
        self.results_path = os.path.join(tern.dir, "qmgr-results.jsonl")
        # The double may run as the tern user: let it write its results.
        with open(self.results_path, "a"):
            pass
        os.chmod(self.results_path, 0o666)

    def queue(self, rcpts, message=None, count=1, sender="sender@tern.test",
              eight_bit=False, smtputf8=False):
        """Queues count messages (queue_fill); returns their queue ids."""
        if message is None:
            message = ("From: sender@tern.test\nTo: %s\nSubject: test\n\n"
                       "Hello.\n.leading dot\n" % rcpts[0])
        path = os.path.join(self.tern.dir, "msg-%d.eml" % time.monotonic_ns())
        with open(path, "wb") as f:
            f.write(message.encode() if isinstance(message, str) else message)
        self.tern.write_config()
        args = [os.path.join(BUILD_DIR, "tests/tools/queue_fill"), "-c",
                self.tern.config_path, "-n", str(count), "-f", sender]
        if eight_bit:
            args.append("-8")
        if smtputf8:
            args.append("-u")
        env = daemon_env()
        env["TERN_QUEUE_UNSAFE_NOSYNC"] = "1"
        r = subprocess.run(args + [path] + list(rcpts), capture_output=True,
                           text=True, env=env, check=True)
        if IS_ROOT:
            # The daemons run as the tern user: the queue must be theirs.
            subprocess.run(["chown", "-R", "tern:", self.tern.queue_dir],
                           check=True)
        return r.stdout.split()

    def job(self, qid, domain=None, rcpts=None, **extra):
        import json
        job = {"qid": qid}
        if domain:
            job["domain"] = domain
        if rcpts:
            job["rcpts"] = list(rcpts)
        job.update(extra)
        with open(self.jobs_path, "a") as f:
            f.write(json.dumps(job) + "\n")

    def results(self):
        import json
        try:
            with open(self.results_path) as f:
                return [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def wait_results(self, n, timeout=20.0):
        wait_for(lambda: len([r for r in self.results() if "job" in r]) >= n,
                 timeout, what=f"{n} delivery result(s)")
        return [r for r in self.results() if "job" in r]


# ---- the queue (tern-qmgr tests) ----

def verp_pipeline(tern, sinks, test_dir, rcpt_reply=None, inbound=False,
                  bounce=None, retry_schedule="1s", delivery=None, queue=None,
                  return_path="bounces.example.test",
                  dest_host="127.0.0.3", sender_host="127.0.0.4"):
    """tern with a submission listener (and an inbound one), example.test
    returning to return_path (None: no VERP), and two sinks as MXs:
    dest.test's on dest_host (rcpt_reply as Sink's) and example.test's on
    sender_host, where DSNs go. Returns t, submission port, inbound port
    or None, the two sinks and the Dns."""
    port = free_port_on([dest_host, sender_host])
    dest = sinks(host=dest_host, port=port, rcpt_reply=rcpt_reply)
    home = sinks(host=sender_host, port=port)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{dest_host}",
               "mx-host=example.test,mx.example.test,10",
               f"host-record=mx.example.test,{sender_host}"], test_dir)
    t = tern({
        "delivery": {"dns_servers": dns.server, "smtp_port": str(port),
                     "tls": "none", "retry_schedule": retry_schedule,
                     **(delivery or {})},
        "domain example.test":
            {"return_path": return_path} if return_path else {},
        **({"bounce": bounce} if bounce else {}),
        **({"queue": queue} if queue else {}),
    })
    sub = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    inb = t.listen("inbound", "inbound") if inbound else None
    t.start()
    return t, sub, inb, dest, home, dns


def rfc3464(verp, rcpt):
    """A remote MX's RFC 3464 report of a late 5.1.1 failure of rcpt,
    sent to the return path verp."""
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.dest.test>\r\n"
            f"To: {verp}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=delivery-status;"
            f" boundary=\"BB\"\r\n\r\n"
            f"--BB\r\nContent-Type: text/plain\r\n\r\nIt failed later.\r\n"
            f"--BB\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.dest.test\r\n\r\n"
            f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\n"
            f"Status: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 mailbox gone after all\r\n"
            f"\r\n--BB--\r\n")


def qmgr_fill(t, rcpts=(), n=1, sender="sender@example.test", notify=None,
               hold=False, extra=(), tell_qmgr=True):
    """Commits n messages to t's queue with tests/tools/qmgr_fill (as
    tern-cleanup would) and tells tern-qmgr; returns their queue ids."""
    cmd = [os.path.join(BUILD_DIR, "tests/tools/qmgr_fill"), "-d",
           t.queue_dir, "-n", str(n), "-s", sender, "-p"]
    if tell_qmgr:
        cmd += ["-q", os.path.join(t.run_dir, "private", "qmgr")]
    for r in rcpts:
        cmd += ["-t", r]
    if notify is not None:
        cmd += ["-N", str(notify)]
    if hold:
        cmd.append("-H")
    if IS_ROOT:
        cmd += ["-u", "tern"]
    cmd += list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True, env=daemon_env(),
                       timeout=600)
    if r.returncode != 0:
        raise AssertionError(f"qmgr_fill failed: {r.stderr}")
    return r.stdout.split()


class FakeAgent:
    """tests/tools/fake_smtp_agent.py connected to t's tern-qmgr, answering
    per a rules dict (see that file); set_rules() changes its mind."""

    def __init__(self, t, rules=None, credits=4, name="agent"):
        self.rules_path = os.path.join(t.dir, f"{name}-rules.json")
        self.jobs_path = os.path.join(t.dir, f"{name}-jobs.jsonl")
        self.set_rules(rules or {})
        self.log = open(os.path.join(t.dir, f"{name}.log"), "ab")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(SRC_DIR, "tests/tools/fake_smtp_agent.py"),
             os.path.join(t.run_dir, "private", "qmgr"), self.rules_path,
             self.jobs_path, str(credits)],
            stdout=self.log, stderr=subprocess.STDOUT)

    def set_rules(self, rules):
        import json
        tmp = self.rules_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rules, f)
        os.replace(tmp, self.rules_path)

    def jobs(self):
        import json
        try:
            with open(self.jobs_path) as f:
                return [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---- running a daemon's stand-in ----

def idle_daemons(t, names):
    """t's daemon_dir gets the build tree's daemons except those named
    (e.g. "smtp"), which become an idle stand-in, so that a test double
    started by the test is the only one doing that daemon's work."""
    d = os.path.join(t.dir, "libexec-idle")
    os.makedirs(d, exist_ok=True)
    for root, _dirs, files in os.walk(os.path.join(BUILD_DIR, "src")):
        for f in files:
            p = os.path.join(root, f)
            if f.startswith("tern-") and os.access(p, os.X_OK) and \
                    not f.endswith((".o", ".a")) and f[5:] not in names:
                dst = os.path.join(d, f)
                if not os.path.lexists(dst):
                    os.symlink(p, dst)
    for name in names:
        dst = os.path.join(d, "tern-" + name)
        if not os.path.lexists(dst):
            with open(dst, "w") as f:
                f.write("#!/bin/sh\n# idle stand-in: ternd stops it with SIGTERM\n"
                        "exec sleep 1000000\n")
            os.chmod(dst, 0o755)
    t.sections["server"]["daemon_dir"] = d
    return t


# ---- jails (run_dir/jail/NAME, see ternd(8)) ----

def tree(path):
    """Every entry under path, as sorted paths relative to it."""
    found = []
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(root, name), path))
    return sorted(found)
