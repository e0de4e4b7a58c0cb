#!/usr/bin/env python3
"""bench/delivery.py - messages/s that tern-smtp delivers from a full queue
to a local SMTP sink (make bench-delivery).

It queues N messages with tests/tools/queue_fill, starts ternd from the
build tree with the tern-qmgr test double (tests/tools/test_qmgr) and
dnsmasq serving the MX, hands all N jobs out at once, and times from the
first job to the last result. The sink is a minimal asyncio SMTP server
(PIPELINING, accepts everything) so that it is not the bottleneck.

    python3 bench/delivery.py [-n 5000] [--agents 2] [--size 2048]
        [--build-dir build] [--idle 5s] [--per-connection 100]
"""
import argparse
import asyncio
import os
import shutil
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))


class FastSink:
    """Accepts every message; counts them and the connections."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.messages = 0
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        srv = self.loop.run_until_complete(
            asyncio.start_server(self._session, self.host, self.port))
        self.ready.set()
        self.loop.run_forever()
        srv.close()

    async def _session(self, reader, writer):
        self.connections += 1
        writer.write(b"220 sink ESMTP\r\n")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                cmd = line[:4].upper()
                if cmd in (b"EHLO", b"HELO"):
                    writer.write(b"250-sink\r\n250-PIPELINING\r\n"
                                 b"250-8BITMIME\r\n250 SIZE 100000000\r\n")
                elif cmd == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    while (await reader.readline()) not in (b".\r\n", b""):
                        pass
                    self.messages += 1
                    writer.write(b"250 2.0.0 OK\r\n")
                elif cmd == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 2.0.0 OK\r\n")
                await writer.drain()
        finally:
            writer.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5000, help="messages")
    ap.add_argument("--agents", type=int, default=2)
    ap.add_argument("--size", type=int, default=2048, help="message bytes")
    ap.add_argument("--rcpts", type=int, default=1, help="recipients each")
    ap.add_argument("--build-dir", default=os.environ.get(
        "TERN_BUILD_DIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--idle", default="5s", help="connection_idle_timeout")
    ap.add_argument("--per-connection", default="100",
                    help="max_messages_per_connection")
    ap.add_argument("--connections", default="20",
                    help="max_connections_per_destination")
    args = ap.parse_args()
    os.environ["TERN_BUILD_DIR"] = os.path.abspath(args.build_dir)
    import ternlib

    base = ternlib.make_test_dir()
    port = ternlib.free_port("127.0.0.2")
    sink = FastSink("127.0.0.2", port)
    dns = ternlib.Dns(["mx-host=bench.test,mx.bench.test,10",
                       "host-record=mx.bench.test,127.0.0.2"], base)
    t = ternlib.Tern(base, {"delivery": {
        "dns_servers": dns.server, "smtp_port": str(port), "tls": "none",
        "agents": str(args.agents),
        "connection_idle_timeout": args.idle,
        "max_messages_per_connection": args.per_connection,
        "max_connections_per_destination": args.connections}})
    q = ternlib.use_qmgr_double(t)
    body = "From: bench@tern.test\nSubject: bench\n\n" + \
        ("x" * 70 + "\n") * max(1, args.size // 71)
    rcpts = ["r%d@bench.test" % i for i in range(args.rcpts)]
    t0 = time.monotonic()
    qids = q.queue(rcpts, message=body, count=args.n)
    t_fill = time.monotonic() - t0
    t.start()
    try:
        ternlib.wait_for(lambda: t.pids_of("smtp") and t.pids_of("qmgr"), 10)
        time.sleep(0.5)
        with open(q.jobs_path, "a") as f:
            import json
            for qid in qids:
                f.write(json.dumps({"qid": qid, "domain": "bench.test"}) + "\n")
        t0 = time.monotonic()
        ternlib.wait_for(lambda: sink.messages >= args.n, 600,
                         interval=0.02, what="all messages at the sink")
        elapsed = time.monotonic() - t0
        results = q.wait_results(args.n, timeout=60)
        ok = sum(1 for r in results for x in r["results"] if x["code"] == 250)
    finally:
        t.stop()
        dns.stop()
    print(f"queued {args.n} messages of ~{args.size} bytes in {t_fill:.2f}s")
    print(f"delivered {sink.messages} messages ({ok} recipients 250) in "
          f"{elapsed:.2f}s over {sink.connections} connections, "
          f"{args.agents} agent(s): {sink.messages / elapsed:.0f} msg/s")
    bugs = t.bugs_logged()
    shutil.rmtree(base, ignore_errors=True)
    if bugs:
        print("\n".join(bugs[:10]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
