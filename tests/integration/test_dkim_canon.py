"""Each dkim_canonicalization end to end with every daemon real: messages
with long folded header fields and trailing whitespace in the body are
submitted to tern-smtpd, signed by tern-signer (one rsa key, one ed25519
key, or both), delivered by tern-smtp to an aiosmtpd sink, and every
DKIM-Signature that arrives is verified by dkimpy. Then the delivered
message is changed the ways a relay might change it, to show what each
canonicalization tolerates."""
import base64
import os
import re
import smtplib
import subprocess

import dkim
import pytest

from ternlib import Dns

SINK_HOST = "127.0.0.3"		# not an address tern listens on
CANONS = ["relaxed/relaxed", "relaxed/simple", "simple/simple",
          "simple/relaxed"]
# Sending domain -> its selectors' key types, in the configured order.
DOMAINS = {
    "rsa.test": ["rsa"],
    "ed.test": ["ed25519"],
    "both.test": ["rsa", "ed25519"],
}
ALGORITHM = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}

# Over 200 characters, folded by the client at two places (a space and a
# tab), and a To with several addresses folded over three lines.
SUBJECT = ("Subject: The quarterly report on shipments, returns, refunds and "
           "the other numbers\r\n that the finance team asked for in the "
           "meeting of last Tuesday, with the corrections\r\n\tfrom the "
           "regional offices and a summary for the board (draft 3)")
TO = ("To: Bob Builder <bob@dest.test>, \"Carol, Accounts\" <carol@dest.test>,"
      "\r\n Dave <dave@dest.test>,\r\n  erin@dest.test, frank@dest.test")
BODY = ("Hello all,  \r\n"
        "\r\n"
        "the numbers are in.\t \r\n"
        "Totals:  12\t34   56\r\n"
        "\r\n"
        "Regards \r\n"
        "\r\n"
        "\r\n")


def message(domain, n):
    assert len(SUBJECT) > 200
    return (f"From: App <app@{domain}>\r\n{TO}\r\n{SUBJECT}\r\n"
            f"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <canon{n}@{domain}>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            f"\r\n{BODY}").encode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A PEM key and DNS record per domain and selector: keys[domain] is a
    list of (selector, key path, kind); records maps the DNS name dkimpy
    asks for to the record (ed25519 needs it given: dnsfunc)."""
    d = tmp_path_factory.mktemp("dkim-keys")
    os.chmod(d, 0o755)
    made, records = {}, {}
    for domain, kinds in DOMAINS.items():
        made[domain] = []
        for i, kind in enumerate(kinds):
            selector = f"{kind[:3]}{i}"
            path = str(d / f"{domain}.{selector}.pem")
            algo = (["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
                    if kind == "rsa" else ["-algorithm", "ED25519"])
            subprocess.run(["openssl", "genpkey", *algo, "-out", path],
                           check=True, capture_output=True)
            os.chmod(path, 0o600)
            der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout",
                                  "-outform", "DER"], check=True,
                                 capture_output=True).stdout
            p = base64.b64encode(der if kind == "rsa" else der[-32:])
            records[f"{selector}._domainkey.{domain}.".encode()] = (
                b"v=DKIM1; k=" + kind.encode() + b"; p=" + p)
            made[domain].append((selector, path, kind))
    return made, records


def deliver_all(tern, sinks, test_dir, keys, canon):
    """Starts tern with the three domains at canon, submits one message
    from each and returns {domain: delivered bytes}."""
    made, _ = keys
    sink = sinks(host=SINK_HOST)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{SINK_HOST}"], test_dir)
    sections = {"delivery": {"dns_servers": dns.server,
                             "smtp_port": str(sink.port), "tls": "none",
                             "retry_schedule": "1s"}}
    for domain, sels in made.items():
        sections[f"domain {domain}"] = {
            "dkim_selector": " ".join(s for s, _, _ in sels),
            "dkim_key": " ".join(p for _, p, _ in sels),
            "dkim_canonicalization": canon}
    t = tern(sections)
    port = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    t.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("app.example.test")
            for n, domain in enumerate(made):
                refused = s.sendmail(f"app@{domain}", [f"u{n}@dest.test"],
                                     message(domain, n))
                assert refused == {}, refused
        got = sink.wait_messages(len(made), timeout=30)
    finally:
        dns.stop()
    by_domain = {}
    for m in got:
        domain = re.search(rb"(?m)^From: App <app@([\w.]+)>", m["data"])
        by_domain[domain.group(1).decode()] = m["data"]
    assert sorted(by_domain) == sorted(made)
    return by_domain


def signatures(data):
    return [v for (k, v) in dkim.rfc822_parse(data)[0]
            if k.lower() == b"dkim-signature"]


def verdicts(data, records):
    """dkimpy's verdict on every DKIM-Signature of data, in order."""
    def dnsfunc(name, timeout=5):
        return records.get(name)
    d = dkim.DKIM(data)
    out = []
    for i in range(len(signatures(data))):
        try:
            out.append(d.verify(idx=i, dnsfunc=dnsfunc))
        except dkim.ValidationError:	# a body hash mismatch raises
            out.append(False)
    return out


@pytest.mark.parametrize("canon", CANONS)
def test_delivered_signatures_verify(tern, sinks, test_dir, keys, canon):
    made, records = keys
    delivered = deliver_all(tern, sinks, test_dir, keys, canon)
    header, body = canon.split("/")
    for domain, data in delivered.items():
        sels = made[domain]
        # The folded fields and the body arrive as they were submitted.
        assert SUBJECT.encode() + b"\r\n" in data and TO.encode() in data
        assert data.endswith(b"\r\n\r\n" + BODY.encode())
        sigs = signatures(data)
        tags = [dkim.util.parse_tag_value(s) for s in sigs]
        assert [x[b"s"].decode() for x in tags] == [s for s, _, _ in sels]
        assert [x[b"a"] for x in tags] == [ALGORITHM[k] for _, _, k in sels]
        assert all(x[b"c"] == canon.encode() and x[b"d"] == domain.encode()
                   for x in tags)
        h = [f.strip().lower() for f in tags[0][b"h"].split(b":")]
        assert b"subject" in h and b"to" in h, h
        # Every signature verifies, the second of two as well.
        assert verdicts(data, records) == [True] * len(sels), (domain, data)
        # The field as libopendkim hashed it: rsa folded with b= on a line
        # of its own, ed25519 on one line.
        for raw, (_, _, kind) in zip(sigs, sels):
            if kind == "rsa":
                assert re.search(rb";\r\n\tb=[\w+/]", raw), raw
            else:
                assert b"\r\n" not in raw.rstrip(b"\r\n"), raw

        def after(old, new):
            changed = data.replace(old, new, 1)
            assert changed != data, old
            return verdicts(changed, records)

        n = len(sels)
        # Relays: a signed field unfolded, refolded, respaced; its name's
        # case changed.
        assert after(b"for in the meeting", b"for in the\r\n meeting") == \
            [header == "relaxed"] * n
        assert after(b"numbers\r\n that", b"numbers that") == \
            [header == "relaxed"] * n
        assert after(b"\r\n\tfrom the regional", b"\r\n from the  regional") \
            == [header == "relaxed"] * n
        assert after(b"\r\nSubject: ", b"\r\nSUBJECT: ") == \
            [header == "relaxed"] * n
        # Trailing whitespace stripped, spaces within a line changed.
        assert after(b"Hello all,  \r\n", b"Hello all,\r\n") == \
            [body == "relaxed"] * n
        assert after(b"Totals:  12\t34   56", b"Totals: 12 34 56") == \
            [body == "relaxed"] * n
        # Both tolerate empty lines added at the end and an unsigned field
        # added at the top; neither tolerates a changed word.
        assert after(b"Regards \r\n\r\n\r\n", b"Regards \r\n\r\n\r\n\r\n") \
            == [True] * n
        assert verdicts(b"X-Relay: passed by\r\n" + data, records) == \
            [True] * n
        assert after(b"Regards", b"Regard") == [False] * n


def test_large_bodies_verify(tern, sinks, test_dir, keys):
    """Bodies larger than what tern-cleanup holds back from the signer
    (256 KiB) and smaller, with trailing whitespace and a dot-led line:
    the content reaches the signer in several batches or in one, and every
    signature still verifies as delivered."""
    made, records = keys
    sink = sinks(host=SINK_HOST)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{SINK_HOST}"], test_dir)
    sels = made["both.test"]
    t = tern({"delivery": {"dns_servers": dns.server,
                           "smtp_port": str(sink.port), "tls": "none",
                           "retry_schedule": "1s"},
              "domain both.test": {
                  "dkim_selector": " ".join(s for s, _, _ in sels),
                  "dkim_key": " ".join(p for _, p, _ in sels)}})
    port = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    t.start()
    sizes = [100 * 1024, 256 * 1024 - 3, 700 * 1024]
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            s.ehlo("app.example.test")
            for n, size in enumerate(sizes):
                lines, i = [], 0
                while sum(len(x) for x in lines) < size:
                    line = f"line {i} of the body, some words  \t"
                    line += "x" * (i % 90)
                    if i % 500 == 7:
                        line = "." + line
                    lines.append(line + "\r\n")
                    i += 1
                body = "".join(lines).encode()
                msg = (f"From: App <app@both.test>\r\nTo: u@dest.test\r\n"
                       f"Subject: large {n}\r\nMessage-ID: <large{n}@both.test>"
                       f"\r\n\r\n").encode() + body
                assert s.sendmail("app@both.test", ["u@dest.test"], msg) == {}
        got = sink.wait_messages(len(sizes), timeout=60)
    finally:
        dns.stop()
    assert len(got) == len(sizes)
    for m in got:
        data = m["data"]
        assert len(data) > 100 * 1024
        assert b"\r\n.line 7 of the body" in data
        assert b"\n" not in data.replace(b"\r\n", b"")
        assert verdicts(data, records) == [True] * len(sels), len(data)
