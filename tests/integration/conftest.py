"""pytest fixtures for tern's integration tests (see ternlib.py)."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import ternlib  # noqa: E402


@pytest.fixture
def test_dir(request):
    d = ternlib.make_test_dir()
    yield d
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        sys.stderr.write(f"kept {d} for inspection\n")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def tern(test_dir):
    """Factory: tern(sections={...}) -> ternlib.Tern (not yet started).
    Every instance is stopped at teardown; a logged sanitizer error or
    panic, or a process left behind, fails the test."""
    made = []

    def make(sections=None, extra="", subdir=None):
        d = test_dir if subdir is None else os.path.join(test_dir, subdir)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        t = ternlib.Tern(d, sections, extra)
        made.append(t)
        return t

    yield make
    problems = []
    for t in made:
        if t.proc is not None and t.proc.poll() is None:
            try:
                t.stop()
            except AssertionError as e:
                problems.append(str(e))
        left = t.group_pids()
        if left:
            problems.append(f"processes left behind: {left}")
            t.kill()
        bugs = t.bugs_logged()
        if bugs:
            problems.append("bugs logged:\n" + "\n".join(bugs[:20]))
    if problems:
        for t in made:
            sys.stderr.write(f"--- {t.log_path}\n{t.log_text()[-6000:]}\n")
        pytest.fail("; ".join(problems))


@pytest.fixture
def sinks():
    """Factory for aiosmtpd sinks, stopped at teardown."""
    made = []

    def make(**kw):
        s = ternlib.Sink(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def dns(test_dir):
    """Factory: dns(records) -> ternlib.Dns running dnsmasq."""
    made = []

    def make(records):
        d = ternlib.Dns(records, test_dir)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
