"""ternctl suppression import FILE / export: CSV in and out of the
queue's suppression list, all or nothing, with file:line errors."""
import csv
import io
import os

import pytest


@pytest.fixture
def t(tern):
    t = tern()
    t.write_config()
    os.makedirs(t.queue_dir, mode=0o700, exist_ok=True)
    return t


def export(t):
    r = t.ternctl("suppression", "export", check=True)
    return list(csv.DictReader(io.StringIO(r.stdout)))


def test_import_then_export_round_trips(t):
    src = os.path.join(t.dir, "in.csv")
    with open(src, "w", newline="") as f:
        f.write('address,source,reason,created,expires,queue_id\r\n'
                'Hard@Example.NET,bounce,"550 5.1.1 ""no such user"", sorry",'
                '2026-11-01T10:00:00Z,,00000000000000AB\r\n'
                'angry@example.net,complaint,"ARF abuse\nsecond line",,,\r\n'
                'later@example.net,manual,,,2999-01-01T00:00:00Z,\r\n')
    r = t.ternctl("suppression", "import", src)
    # A line break inside a reason is refused: all or nothing.
    assert r.returncode == 1
    assert "in.csv:3: reason" in r.stderr
    assert "nothing was imported" in r.stderr
    assert export(t) == []
    with open(src, "w", newline="") as f:
        f.write('address,source,reason,created,expires,queue_id\r\n'
                'Hard@Example.NET,bounce,"550 5.1.1 ""no such user"", sorry",'
                '2026-11-01T10:00:00Z,,00000000000000AB\r\n'
                'angry@example.net,complaint,ARF abuse,,,\r\n'
                '\r\n'
                'later@example.net,manual,,,2999-01-01T00:00:00Z,\r\n')
    r = t.ternctl("suppression", "import", src)
    assert r.returncode == 0, r.stderr
    assert "imported 3 entries" in r.stdout
    rows = export(t)
    assert [x["address"] for x in rows] == [
        "angry@example.net", "hard@example.net", "later@example.net"]
    hard = rows[1]
    assert hard["source"] == "bounce"
    assert hard["reason"] == '550 5.1.1 "no such user", sorry'
    assert hard["created"] == "2026-11-01T10:00:00Z"
    assert hard["expires"] == ""
    assert hard["queue_id"] == "00000000000000AB"
    assert rows[0]["source"] == "complaint"
    assert rows[2]["reason"] == "imported"
    assert rows[2]["expires"] == "2999-01-01T00:00:00Z"
    # The export imports again unchanged.
    out = os.path.join(t.dir, "out.csv")
    with open(out, "w") as f:
        f.write(t.ternctl("suppression", "export", check=True).stdout)
    r = t.ternctl("suppression", "import", out)
    assert r.returncode == 0, r.stderr
    assert export(t) == rows


@pytest.mark.parametrize("text,msg", [
    ("", "in.csv:1: empty file"),
    ("email\nx@y.test\n", "unknown column 'email'"),
    ("address\nnot-an-address\n", "in.csv:2: 'not-an-address' is not an address"),
    ("address,source\na@b.test,spam\n", "in.csv:2: source must be"),
    ("address,expires\na@b.test,tomorrow\n", "in.csv:2: expires:"),
    ("address,queue_id\na@b.test,12\n", "in.csv:2: queue_id:"),
    ('address\n"a@b.test\n', "unterminated quoted field"),
    ('address\n"a@b.test"x\n', "text after a closing quote"),
])
def test_bad_imports_name_the_line_and_import_nothing(t, text, msg):
    src = os.path.join(t.dir, "in.csv")
    with open(src, "w") as f:
        f.write(text)
    r = t.ternctl("suppression", "import", src)
    assert r.returncode == 1
    assert msg in r.stderr, r.stderr
    assert export(t) == []


def test_import_from_stdin_and_usage(t):
    r = t.ternctl("suppression", "import", "-", input="address\nx@y.test\n")
    assert r.returncode == 0, r.stderr
    assert [x["address"] for x in export(t)] == ["x@y.test"]
    assert t.ternctl("suppression", "frobnicate").returncode == 2
