#!/usr/bin/env python3
"""A client: connects to a Service address N times and prints which backend answered.

    probe.py tcp 10.96.0.10 80 --count 20     -> one backend name per line ("-" on failure)
    probe.py udp 10.96.0.53 53 --count 5
    probe.py hold 10.96.0.10 80 --seconds 30  -> keeps one TCP connection, talks every 0.2 s,
                                                 prints the backend of each reply
    probe.py udpfixed 10.96.0.53 53 --count 5 --sport 40053 -> datagrams from one source port

Each attempt has its own source port (a new connection), so IPVS schedules each one anew.
"""
import argparse
import socket
import sys
import time


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def tcp_once(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.decode().strip() or "-"
    except OSError:
        return "-"


def udp_once(host, port, timeout):
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(b"ping\n", (host, port))
        data, _ = s.recvfrom(256)
        return data.decode().strip() or "-"
    except OSError:
        return "-"
    finally:
        s.close()


def udp_fixed(host, port, count, sport, interval, timeout):
    """Datagrams from one source port: what a long-lived UDP client (a resolver) looks like
    to conntrack and IPVS."""
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("" if family_of(host) == socket.AF_INET else "::", sport))
    s.settimeout(timeout)
    for _ in range(count):
        try:
            s.sendto(b"ping\n", (host, port))
            data, _ = s.recvfrom(256)
            print(data.decode().strip() or "-", flush=True)
        except OSError:
            print("-", flush=True)
        time.sleep(interval)
    s.close()


def hold(host, port, seconds, timeout):
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        print("-", flush=True)
        return
    s.settimeout(timeout)
    f = s.makefile("rb")
    first = f.readline().decode().strip()
    print(first or "-", flush=True)
    end = time.time() + seconds
    while time.time() < end:
        try:
            s.sendall(b"x\n")
            line = f.readline().decode().strip()
        except OSError:
            line = ""
        print(line.split(" ")[0] if line else "-", flush=True)
        if not line:
            return
        time.sleep(0.2)
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["tcp", "udp", "hold", "udpfixed"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--timeout", type=float, default=2)
    ap.add_argument("--sport", type=int, default=40053)
    ap.add_argument("--interval", type=float, default=0.2)
    args = ap.parse_args()
    if args.mode == "udpfixed":
        udp_fixed(args.host, args.port, args.count, args.sport, args.interval, args.timeout)
        return 0
    if args.mode == "hold":
        hold(args.host, args.port, args.seconds, args.timeout)
        return 0
    once = tcp_once if args.mode == "tcp" else udp_once
    for _ in range(args.count):
        print(once(args.host, args.port, args.timeout), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
