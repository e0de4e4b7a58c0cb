"""A minimal DNS query, to see that a test resolver answers."""
import socket
import struct


def answers(host, port, name="probe.test", timeout=0.3):
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, (host, port))
            data, _ = s.recvfrom(512)
            return data[:2] == b"\x12\x34"
        except OSError:
            return False
