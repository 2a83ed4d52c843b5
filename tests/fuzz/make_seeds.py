#!/usr/bin/python3
"""Writes the seed corpus of fuzz_packet (tests/fuzz/corpus/). Layout of an input: see the
comment at the top of fuzz_packet.cc. Run from anywhere: python3 tests/fuzz/make_seeds.py"""
import os
import struct

HUB_IP = bytes([192, 0, 2, 1])
HUB_MAC = bytes(6)
PEER_MAC = bytes([2, 0, 0, 0, 0, 9])
RAW, UDP, SEALED, GATEWAY = 0, 1, 2, 3
PEER_A, PEER_B, REPEAT = 0, 1, 2


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return struct.pack("!H", ~s & 0xFFFF)


def ipv4(src, dst, proto, payload):
    hdr = struct.pack("!BBHHHBB2s4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, b"\0\0",
                      bytes(src), bytes(dst))
    return hdr[:10] + checksum(hdr) + hdr[12:] + payload


def ipv6(src_last, dst_last, proto, payload):
    def addr(last):
        return bytes([0xFD] + [0] * 14 + [last])
    return struct.pack("!IHBB", 0x60000000, len(payload), proto, 64) + addr(src_last) + \
        addr(dst_last) + payload


def udp(sport, dport, body=b""):
    return struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body


def tcp(sport, dport):
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x02, 65535, 0, 0)


def ether(ethertype, payload, src=PEER_MAC, dst=HUB_MAC):
    return dst + src + struct.pack("!H", ethertype) + payload


def arp(op, sender_ip, target_ip):
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + PEER_MAC + bytes(sender_ip) + \
        bytes(6) + bytes(target_ip)


def wg_header(msg_type, size):
    return bytes([msg_type, 0, 0, 0]) + bytes(size - 4)


A, B, GW = [10, 0, 0, 2], [10, 0, 0, 3], [10, 0, 0, 1]
SEEDS = {
    "sealed-a-to-b-udp": bytes([SEALED, PEER_A]) + ipv4(A, B, 17, udp(1000, 53, b"query")),
    "sealed-b-to-a-tcp": bytes([SEALED, PEER_B]) + ipv4(B, A, 6, tcp(443, 5000)),
    "sealed-ssh-denied": bytes([SEALED, PEER_A]) + ipv4(A, B, 6, tcp(5000, 22)),
    "sealed-to-gateway": bytes([SEALED, PEER_A]) + ipv4(A, GW, 17, udp(1000, 80, b"GET /")),
    "sealed-ipv6": bytes([SEALED, PEER_A]) + ipv6(2, 3, 17, udp(1000, 53, b"q6")),
    "sealed-keepalive": bytes([SEALED, PEER_A]),
    "sealed-spoofed-src": bytes([SEALED, PEER_B]) + ipv4(A, B, 17, udp(1, 2)),
    "sealed-replay": bytes([SEALED, PEER_A | REPEAT]) + ipv4(A, B, 17, udp(1, 2)),
    "raw-arp-request": bytes([RAW]) + ether(0x0806, arp(1, [192, 0, 2, 9], HUB_IP),
                                            dst=b"\xff" * 6),
    "raw-arp-reply": bytes([RAW]) + ether(0x0806, arp(2, [192, 0, 2, 9], HUB_IP)),
    "raw-transport": bytes([RAW]) + ether(0x0800, ipv4([192, 0, 2, 9], HUB_IP, 17, udp(
        51821, 51820, wg_header(4, 48)))),
    "udp-initiation": bytes([UDP, PEER_A]) + wg_header(1, 148),
    "udp-response": bytes([UDP, PEER_A]) + wg_header(2, 92),
    "udp-cookie-reply": bytes([UDP, PEER_B]) + wg_header(3, 64),
    "gateway-return": bytes([GATEWAY, PEER_A]) + ipv4(GW, A, 17, udp(80, 1000, b"200 OK")),
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"wrote {len(SEEDS)} seeds to {out}")
