"""The golden DSNs of tests/unit/golden (made by src/bounce/dsn.c, kept
byte-exact by tests/unit/test_bounce) are what an independent reader,
Python's email package, takes for RFC 3464 reports."""
import email
import email.policy
import glob
import os

import pytest

from ternlib import SRC_DIR

GOLDEN = sorted(glob.glob(os.path.join(SRC_DIR, "tests/unit/golden/dsn-*.eml")))


def test_golden_files_exist():
    assert len(GOLDEN) >= 3


@pytest.mark.parametrize("path", GOLDEN, ids=os.path.basename)
def test_golden_dsn_parses_as_multipart_report(path):
    with open(path, "rb") as f:
        raw = f.read()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    msg = email.message_from_bytes(raw, policy=email.policy.SMTP)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts][:2] == [
        "text/plain", "message/delivery-status"]
    assert parts[2].get_content_type() in ("text/rfc822-headers", "message/rfc822")
    # Python reads message/delivery-status as a list of header blocks:
    # the per-message fields, then one block per recipient.
    blocks = parts[1].get_payload()
    assert blocks[0]["Reporting-MTA"] == "dns; mail.example.test"
    assert blocks[0]["Arrival-Date"]
    assert len(blocks) >= 2
    for b in blocks[1:]:
        assert b["Final-Recipient"].startswith("rfc822; ")
        assert b["Action"] in ("failed", "delayed", "delivered")
        assert b["Status"][0] in "245"
        if b["Action"] == "delayed":
            assert b["Will-Retry-Until"]
