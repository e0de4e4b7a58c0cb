"""The docs stay true and the two commands of the README work:
every config key is documented, the example config is valid, and
tools/quickstart brings tern up and Ctrl-C takes it down."""
import os
import re
import signal
import subprocess
import time

import ternlib
from ternlib import BUILD_DIR, SRC_DIR, wait_for


def config_keys():
    """(section, key) for every key in the parser's table."""
    with open(os.path.join(SRC_DIR, "src/lib/config.c")) as f:
        text = f.read()
    keys = re.findall(r'\{ SECT_([A-Z]+), "([a-z_]+)"', text)
    assert len(keys) > 30, "key table not found"
    return keys


def test_every_key_is_documented():
    with open(os.path.join(SRC_DIR, "man/tern.conf.5")) as f:
        man = f.read()
    missing = [f"[{s.lower()}] {k}" for s, k in config_keys()
               if not re.search(r"^\.BR? .*\b%s\b" % re.escape(k), man, re.M)]
    assert not missing, f"keys missing from man/tern.conf.5: {missing}"


def test_every_section_in_example_config():
    with open(os.path.join(SRC_DIR, "conf/tern.conf")) as f:
        example = f.read()
    sections = {s.lower() for s, _ in config_keys()}
    for s in sections:
        assert re.search(r"^\[%s[ \]]" % s, example, re.M), f"[{s}] not in conf/tern.conf"


def test_example_config_passes_check_config():
    if not os.path.exists("/etc/ssl/certs/ssl-cert-snakeoil.pem") and os.geteuid() == 0:
        subprocess.run(["make-ssl-cert", "generate-default-snakeoil"], check=True)
    r = subprocess.run([os.path.join(BUILD_DIR, "src/ctl/ternctl"), "-c",
                        os.path.join(SRC_DIR, "conf/tern.conf"), "check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ok (4 listener(s), 1 domain(s))" in r.stdout


def test_quickstart_runs_and_stops(test_dir):
    sub, inb = ternlib.free_port(), ternlib.free_port()
    env = dict(os.environ, TERN_DEV_DIR=os.path.join(test_dir, "dev"),
               TERN_SUBMISSION_PORT=str(sub), TERN_INBOUND_PORT=str(inb))
    log = open(os.path.join(test_dir, "quickstart.log"), "wb")
    p = subprocess.Popen([os.path.join(SRC_DIR, "tools/quickstart")], env=env,
                         stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        ternlib.wait_port("127.0.0.1", sub, timeout=240)
        ternlib.wait_port("127.0.0.1", inb, timeout=10)
        with open(os.path.join(test_dir, "quickstart.log")) as f:
            out = f.read()
        assert "swaks --server 127.0.0.1:%d" % sub in out
        for f in ("tls/cert.pem", "tls/key.pem", "dkim/example.test.s1.pem",
                  "tern.conf"):
            assert os.path.exists(os.path.join(test_dir, "dev", f)), f
        # Ctrl-C reaches the whole foreground process group.
        os.killpg(p.pid, signal.SIGINT)
        assert p.wait(30) == 0
        time.sleep(0.2)
        left = subprocess.run(["pgrep", "-g", str(p.pid)], capture_output=True,
                              text=True).stdout.split()
        assert left == [], f"processes left: {left}"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_configure_names_missing_package(test_dir):
    """configure stops with the Debian package to install when a
    dependency is missing (here: pkg-config finds nothing)."""
    if not os.path.exists(os.path.join(SRC_DIR, "configure")):
        subprocess.run(["autoreconf", "-fi"], cwd=SRC_DIR, check=True)
    env = dict(os.environ, PKG_CONFIG_LIBDIR=os.path.join(test_dir, "empty"),
               PKG_CONFIG_PATH="")
    r = subprocess.run([os.path.join(SRC_DIR, "configure"), "-q"], cwd=test_dir,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "install the Debian package libssl-dev" in r.stderr, r.stderr[-2000:]


def test_ternctl_help_names_every_documented_option():
    """-h and --help print the usage to stdout and exit 0; it names every
    option that ternctl(8) documents. A usage error exits 2."""
    with open(os.path.join(SRC_DIR, "man/ternctl.8")) as f:
        documented = set(re.findall(r"\\-\\-([a-z]+)", f.read()))
    assert {"source", "expires", "since", "bits"} <= documented, documented
    ternctl = os.path.join(BUILD_DIR, "src/ctl/ternctl")
    for flag in ("-h", "--help"):
        r = subprocess.run([ternctl, flag], capture_output=True, text=True)
        assert r.returncode == 0, (flag, r.stderr)
        assert r.stdout.startswith("usage: ternctl"), r.stdout
        missing = [o for o in documented if f"--{o}" not in r.stdout]
        assert not missing, f"ternctl {flag} does not name {missing}"
    r = subprocess.run([ternctl, "no-such-command"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "usage: ternctl" in r.stderr
