#!/usr/bin/python3
"""queue-seeds.py - writes the seed corpus of fuzz_queue_records: one
valid value per decoder, encoded here independently of queue/record.c
from the layouts in queue/SCHEMA.md (so the seeds also check the
document). The first byte selects the decoder, as in the fuzz target.
usage: tests/fuzz/queue-seeds.py [DIR]  (default tests/fuzz/corpus/fuzz_queue_records)
"""
import os
import struct
import sys

def u8(v): return struct.pack(">B", v)
def u16(v): return struct.pack(">H", v)
def u32(v): return struct.pack(">I", v)
def u64(v): return struct.pack(">Q", v)
def i64(v): return struct.pack(">q", v)
def s(t):
    b = t.encode() + b"\0"
    return u16(len(b)) + b
def data(b): return u32(len(b)) + b

V = u8(1)
msg = (V + i64(1700000000123) + u64(70000) + u32(2) + u8(1) + u8(1) + u8(2)
       + u8(3) + u32(3) + u32(1) + u32(1) + u32(1)
       + s("sender@example.test") + s("ENV1") + s("alice") + s("192.0.2.1")
       + s("client.example.test") + s("") + s("<1@example.test>"))
rcpt = (V + u8(2) + u8(0x15) + u8(0x06) + u32(2) + i64(1000) + i64(2000)
        + i64(3000) + u16(451) + s("r@example.test") + s("rfc822;r@example.test")
        + s("4.3.0") + s("try later") + s("mx.example.test[192.0.2.2]:25") + s(""))
event = (V + i64(1700000000999) + u8(4) + u64(0x0190F3A1C2B40123) + u32(1)
         + u32(1) + u16(550) + s("r@example.test") + s("5.1.1") + s("no such user")
         + s("mx.example.test") + s("bad-mailbox"))
supp = V + u8(1) + i64(5) + i64(0) + u64(42) + s("550 5.1.1 no such user")
active = V + i64(1234)
marker = V
meta64 = V + u64(7)
meta32 = V + u32(1)
chunk = V + b"From: a@b\r\n\r\nbody\r\n"
quar = V + i64(77) + s("recipients") + data(b"\0" * 12) + s("corrupt") + data(b"\1xyz")
sched = u64(1700000000000) + u64(0x0190F3A1C2B40123) + u32(3)
rkey = u64(0x0190F3A1C2B40123) + u32(3)
evidx = u64(0x0190F3A1C2B40123) + u64(9)
softfail = V + u16(2) + i64(1700000000000) + u64(5) + i64(1700000001000) + u64(6)

seeds = [msg, rcpt, event, supp, active, marker, meta64, meta32, chunk, quar,
         sched, rkey, evidx, softfail]
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "corpus", "fuzz_queue_records")
os.makedirs(out, exist_ok=True)
for i, v in enumerate(seeds):
    with open(os.path.join(out, "seed-%02d" % i), "wb") as f:
        f.write(bytes([i]) + v)
