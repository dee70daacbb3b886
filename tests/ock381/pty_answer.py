#!/usr/bin/python3
"""Run a command on a pseudo-terminal and answer its prompts.

openCryptoki 3.8.1's pkcscca reads its PINs from standard input only after
turning echo off with tcsetattr(TCSAFLUSH), which both requires a terminal and
throws away anything typed ahead. So each answer is written only once its
prompt has been printed AND the terminal's ECHO flag has gone off (on Linux
the master side of a pty reports the slave's termios), i.e. once the program
is really waiting for it.

Usage: pty_answer.py [--timeout SECONDS] --answer PROMPT=REPLY ... -- CMD ARGS...

Everything the command prints is copied to our standard output. The exit
status is the command's, or 124 if it timed out, or 125 if a prompt never
came. Standard library only, so it runs on a bare Debian with python3.
"""

import os
import pty
import select
import signal
import sys
import termios
import time


def usage(msg):
    sys.stderr.write("pty_answer.py: %s\n" % msg)
    sys.exit(2)


def parse(argv):
    timeout = 120.0
    answers = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return timeout, answers, argv[i + 1:]
        if a == "--timeout" and i + 1 < len(argv):
            timeout = float(argv[i + 1])
            i += 2
            continue
        if a == "--answer" and i + 1 < len(argv):
            prompt, sep, reply = argv[i + 1].partition("=")
            if not sep or not prompt:
                usage("--answer needs PROMPT=REPLY")
            answers.append((prompt.encode(), reply.encode()))
            i += 2
            continue
        usage("unexpected argument %r" % a)
    usage("missing -- CMD")


def echo_is_off(fd):
    try:
        return not (termios.tcgetattr(fd)[3] & termios.ECHO)
    except termios.error:
        return False


def main():
    timeout, answers, cmd = parse(sys.argv[1:])
    if not cmd:
        usage("missing command")
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)

    deadline = time.monotonic() + timeout
    seen = b""  # output not yet matched against the next prompt
    status = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            sys.stdout.write("\npty_answer.py: timed out after %gs\n" % timeout)
            sys.exit(124)
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            if not data:
                break
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            seen += data
        if answers and answers[0][0] in seen:
            # Wait (bounded) until the program has switched echo off, i.e. is
            # blocked reading the PIN; only then is typed input kept.
            until = time.monotonic() + 5.0
            while not echo_is_off(fd) and time.monotonic() < until:
                time.sleep(0.02)
            time.sleep(0.05)
            os.write(fd, answers[0][1] + b"\n")
            seen = b""
            answers.pop(0)
    _, status = os.waitpid(pid, 0)
    if answers:
        sys.stdout.write("\npty_answer.py: the prompt %r never came\n"
                         % answers[0][0].decode(errors="replace"))
        sys.exit(125)
    if os.WIFEXITED(status):
        sys.exit(os.WEXITSTATUS(status))
    sys.exit(128 + os.WTERMSIG(status))


if __name__ == "__main__":
    main()
