"""Leaks files and sockets from two functions of its own, to show Python frames in tracer.

Usage: leaky.py [--files N] [--sockets M] [--fixed]
"""
import argparse
import os
import socket
import tempfile

held = []


def open_all(directory, n, fixed):
    for i in range(n):
        f = open(os.path.join(directory, f"f{i}"), "w")  # tracer-demo: leak site (files)
        if fixed:
            f.close()
        else:
            held.append(f)


def connect_all(m, fixed):
    for _ in range(m):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # tracer-demo: leak site (sockets)
        if fixed:
            s.close()
        else:
            held.append(s)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--sockets", type=int, default=5)
    p.add_argument("--fixed", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        open_all(d, args.files, args.fixed)
        connect_all(args.sockets, args.fixed)
        print(f"held {len(held)} objects", flush=True)
        # Exit without closing: the descriptors are open at exit.
        os._exit(0)


if __name__ == "__main__":
    main()
