#!/usr/bin/python3
"""Catch syslog(3) messages on a Unix datagram socket and append them to a file.

openCryptoki 3.8.1 reports some failures only through syslog (for example the
CCA STDLL's "Error loading library" when dlopen of libcsulcca.so fails). A CI
container has no syslog daemon, so the harness binds /dev/log itself for the
length of the run (only when nothing else owns it) and removes it afterwards.

Usage: syslog_catch.py SOCKET_PATH OUTPUT_FILE   (runs until killed)
"""

import os
import socket
import sys


def main():
    path, out = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o666)
    with open(out, "ab", buffering=0) as f:
        while True:
            data = sock.recv(65536)
            f.write(data.rstrip(b"\0\n") + b"\n")


if __name__ == "__main__":
    main()
