#!/usr/bin/env python3
"""A test double for tern-smtp: connects to tern-qmgr's socket as a
delivery agent, speaks the real IPC protocol of src/lib/ipc.h (HELLO,
DELIVERY_READY, DELIVERY_JOB, DELIVERY_RESULT) and answers each job per
a rules file, re-read for every job (so a test can change its mind):

  {"default": "250 2.0.0 ok",
   "domains": {"retry.test": ["451 4.3.0 try later", "250 2.0.0 ok"],
               "hard.test": "550 5.1.1 no such user",
               "slow.test": "hang",          # never answers
               "boom.test": "crash"}}        # exits at once (agent crash)

A list gives the reply for the 1st, 2nd, ... attempt at an address (the
last repeats; counted by this process). A reply may start with the stage
it answers, as "rcpt:452 4.2.2 full" (none, connect, helo, starttls,
mail, rcpt, data, dot: enum delivery_stage); without one it is "none",
a reply qmgr does not count against the address. Every job is appended
to the jobs file as a JSON line. Usage:
  fake_smtp_agent.py SOCKET RULES JOBS_LOG [CREDITS]
"""
import json
import os
import socket
import struct
import sys
import time

from ipcdefs import IPC_VERSION

IPC_HELLO = 0x0001
IPC_DELIVERY_READY = 0x0401
IPC_DELIVERY_JOB = 0x0402
IPC_DELIVERY_RESULT = 0x0403
STAGES = ["none", "connect", "helo", "starttls", "mail", "rcpt", "data",
          "dot"]


def frame(typ, reqid, payload):
    return struct.pack(">IHHI", len(payload), typ, 0, reqid) + payload


def put_str(s):
    b = s.encode() + b"\0"
    return struct.pack(">I", len(b)) + b


class Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError("truncated")
        v = self.d[self.p:self.p + n]
        self.p += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def str(self):
        n = self.u32()
        return self.take(n)[:-1].decode("utf-8", "replace")


def parse_job(payload):
    r = Reader(payload)
    job = {"qid": r.str(), "sender": r.str(), "domain": r.str(),
           "body": r.u8(), "smtputf8": r.u8(), "size": r.u64(),
           "ret": r.u8(), "envid": r.str(), "arrival_ms": r.i64()}
    n = r.u32()
    job["rcpts"] = []
    for _ in range(n):
        job["rcpts"].append({"index": r.u32(), "address": r.str(),
                             "orcpt": r.str(), "notify": r.u8()})
    if r.p != len(payload):
        raise ValueError("bytes left over in DELIVERY_JOB")
    return job


def load_rules(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def main():
    sock_path, rules_path, jobs_path = sys.argv[1:4]
    credits = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    attempts = {}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for _ in range(100):
        try:
            s.connect(sock_path)
            break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit("cannot connect to " + sock_path)
    s.sendall(frame(IPC_HELLO, 0, struct.pack(">I", IPC_VERSION) + put_str("smtp")))
    s.sendall(frame(IPC_DELIVERY_READY, 0, struct.pack(">I", credits)))
    buf = b""
    while True:
        data = s.recv(65536)
        if not data:
            return
        buf += data
        while len(buf) >= 12:
            length, typ, _flags, reqid = struct.unpack(">IHHI", buf[:12])
            if len(buf) < 12 + length:
                break
            payload = buf[12:12 + length]
            buf = buf[12 + length:]
            if typ != IPC_DELIVERY_JOB:
                continue
            job = parse_job(payload)
            job["job"] = reqid
            with open(jobs_path, "a") as f:
                f.write(json.dumps(job) + "\n")
            rules = load_rules(rules_path)
            rule = rules.get("domains", {}).get(
                job["domain"], rules.get("default", "250 2.0.0 ok"))
            if rule == "crash":
                os._exit(3)
            if rule == "hang":
                continue
            out = struct.pack(">I", len(job["rcpts"]))
            for rc in job["rcpts"]:
                n = attempts.get(rc["address"], 0)
                attempts[rc["address"]] = n + 1
                reply = rule[min(n, len(rule) - 1)] if isinstance(rule, list) \
                    else rule
                stage = "none"
                if reply.split(" ", 1)[0].split(":")[0] in STAGES:
                    stage, reply = reply.split(":", 1)
                code, status, text = (reply.split(" ", 2) + ["", ""])[:3]
                out += struct.pack(">IHB", rc["index"], int(code),
                                   STAGES.index(stage))
                out += put_str(status) + put_str(text)
                out += put_str("mx." + job["domain"] + "[127.0.0.1]:25")
                out += put_str("127.0.0.1") + put_str("") + struct.pack(">Q", 5)
            s.sendall(frame(IPC_DELIVERY_RESULT, reqid, out))


if __name__ == "__main__":
    main()
