#!/usr/bin/env python3
"""A pod's application: answers every TCP connection and UDP datagram with its own name.

    echo_server.py --name pod-a --tcp 8080 --udp 5353 [--tcp 9090 ...] [--http 80]

TCP: on connect it writes "<name>\n"; anything the client then sends is echoed back prefixed
with the name, line by line, so a long-lived connection can prove it still reaches the same
backend. UDP: each datagram is answered with "<name>\n".
"""
import argparse
import socket
import sys
import threading


def serve_tcp(name, port, family):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    s.listen(128)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(name, conn), daemon=True).start()


def handle(name, conn):
    try:
        conn.sendall((name + "\n").encode())
        f = conn.makefile("rb")
        for line in f:
            conn.sendall(name.encode() + b" " + line)
    except OSError:
        pass
    finally:
        conn.close()


def serve_http(name, port, family):
    """A minimal HTTP/1.0 server: every GET is answered with the pod's name."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(128)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=answer_http, args=(name, conn), daemon=True).start()


def answer_http(name, conn):
    try:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 8192:
            chunk = conn.recv(1024)
            if not chunk:
                break
            data += chunk
        body = (name + "\n").encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                     str(len(body)).encode() + b"\r\n\r\n" + body)
    except OSError:
        pass
    finally:
        conn.close()


def serve_udp(name, port, family):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    while True:
        _, addr = s.recvfrom(2048)
        s.sendto((name + "\n").encode(), addr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--tcp", type=int, action="append", default=[])
    ap.add_argument("--udp", type=int, action="append", default=[])
    ap.add_argument("--http", type=int, action="append", default=[])
    ap.add_argument("--ipv6", action="store_true", help="also listen on IPv6")
    args = ap.parse_args()
    families = [socket.AF_INET] + ([socket.AF_INET6] if args.ipv6 else [])
    threads = []
    for fam in families:
        for p in args.tcp:
            threads.append(threading.Thread(target=serve_tcp, args=(args.name, p, fam), daemon=True))
        for p in args.udp:
            threads.append(threading.Thread(target=serve_udp, args=(args.name, p, fam), daemon=True))
    for p in args.http:
        threads.append(threading.Thread(target=serve_http, args=(args.name, p, socket.AF_INET),
                                        daemon=True))
    for t in threads:
        t.start()
    print("ready", flush=True)
    sys.stdout.close()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
