#!/usr/bin/env python3
"""Plays a VHS tape's keystrokes into a program in a pseudo-terminal and records an asciicast
v2 file (https://docs.asciinema.org/manual/asciicast/v2/).

Understood from the tape: Type (and Type@SPEED), Enter, Escape, Tab, Backspace, Space,
Up/Down/Left/Right/PageUp/PageDown (with an optional count), Ctrl+<key>, Sleep, Hide, Show,
Set TypingSpeed. Other settings (Output, FontSize, Theme ...) are about VHS's rendering and are
ignored. The command typed while hidden is not run in a shell: its VAR=value prefixes become the
environment and its program is replaced by --bin, the rest are its arguments. Keys sent are
recorded as "i" events, so the recording says what was pressed.
"""

import argparse
import codecs
import fcntl
import json
import os
import pty
import re
import select
import shlex
import signal
import struct
import sys
import tempfile
import termios
import time

KEYS = {
    "Enter": "\r",
    "Escape": "\x1b",
    "Tab": "\t",
    "Backspace": "\x7f",
    "Space": " ",
    "Up": "\x1b[A",
    "Down": "\x1b[B",
    "Right": "\x1b[C",
    "Left": "\x1b[D",
    "PageUp": "\x1b[5~",
    "PageDown": "\x1b[6~",
}


def duration(text):
    """'500ms', '6s', '1.5' (seconds) -> seconds."""
    match = re.fullmatch(r"([0-9.]+)(ms|s|m)?", text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    value = float(match.group(1))
    return {"ms": value / 1000, "m": value * 60}.get(match.group(2), value)


def parse_tape(path):
    """Yields (line number, command, argument) for the commands that matter."""
    with open(path, encoding="utf-8") as tape:
        for number, line in enumerate(tape, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            command, _, rest = line.partition(" ")
            yield number, command, rest.strip()


class Recorder:
    def __init__(self, cols, rows, out):
        self.cols, self.rows, self.out = cols, rows, out
        self.events = []
        self.started = None
        self.master = None
        self.pid = None
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def spawn(self, argv, env):
        pid, master = pty.fork()
        if pid == 0:
            size = struct.pack("HHHH", self.rows, self.cols, 0, 0)
            fcntl.ioctl(0, termios.TIOCSWINSZ, size)
            try:
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.cols, 0, 0))
        self.pid, self.master = pid, master

    def now(self):
        return 0.0 if self.started is None else time.monotonic() - self.started

    def pump(self, seconds):
        """Reads the program's output for `seconds`, recording it once shown."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.master is None:
                if self.master is None and left > 0:
                    time.sleep(left)
                return
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            if not data:
                os.close(self.master)
                self.master = None
                return
            text = self.decoder.decode(data)
            if text and self.started is not None:
                self.events.append([round(self.now(), 6), "o", text])

    def send(self, keys):
        if self.master is None:
            raise SystemExit("record-demo: the program exited before the tape ended")
        if self.started is not None:
            self.events.append([round(self.now(), 6), "i", keys])
        os.write(self.master, keys.encode("utf-8"))

    def finish(self, wait):
        """Waits for the program to exit (the tape should quit it), then writes the cast."""
        deadline = time.monotonic() + wait
        while self.master is not None and time.monotonic() < deadline:
            self.pump(0.2)
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.pump(0.2)
                break
        else:
            if self.master is not None:
                os.kill(self.pid, signal.SIGTERM)
                print("record-demo: the program did not exit; sent SIGTERM", file=sys.stderr)
        header = {
            "version": 2,
            "width": self.cols,
            "height": self.rows,
            "timestamp": int(time.time()),
            "title": "incident-console --demo",
            "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
        }
        with open(self.out, "w", encoding="utf-8") as cast:
            cast.write(json.dumps(header) + "\n")
            for event in self.events:
                cast.write(json.dumps(event, ensure_ascii=False) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tape", default="demo.tape")
    parser.add_argument("--bin", required=True, help="the program to run instead of the typed one")
    parser.add_argument("--out", default="assets/demo.cast")
    parser.add_argument("--cols", type=int, default=120)
    parser.add_argument("--rows", type=int, default=34)
    args = parser.parse_args()

    recorder = Recorder(args.cols, args.rows, args.out)
    typing = 0.08
    command = ""
    config_home = tempfile.mkdtemp(prefix="record-demo-")
    for number, name, rest in parse_tape(args.tape):
        where = f"{args.tape}:{number}"
        if name == "Set":
            key, _, value = rest.partition(" ")
            if key == "TypingSpeed":
                typing = duration(value.strip('"'))
        elif name == "Hide":
            # Only the command line is hidden in the tape; recording starts at Show.
            continue
        elif name == "Show":
            if recorder.started is None:
                recorder.started = time.monotonic()
        elif name.startswith("Type"):
            speed = duration(name.split("@", 1)[1]) if "@" in name else typing
            text = json.loads(rest) if rest.startswith('"') else rest
            if recorder.pid is None:
                command += text
                continue
            for char in text:
                recorder.send(char)
                recorder.pump(speed)
        elif name in KEYS or name.split("@")[0] in KEYS:
            key = name.split("@")[0]
            count = int(rest) if rest.isdigit() else 1
            if recorder.pid is None and key == "Enter":
                words = shlex.split(command)
                env = {k: v for k, v in os.environ.items() if k != "INCIDENT_CONSOLE_CONFIG"}
                env.update(TERM="xterm-256color", XDG_CONFIG_HOME=config_home)
                while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                    variable, _, value = words.pop(0).partition("=")
                    env[variable] = value
                if not words:
                    raise SystemExit(f"record-demo: {where}: no command typed before Enter")
                recorder.spawn([args.bin] + words[1:], env)
                continue
            for _ in range(count):
                recorder.send(KEYS[key])
                recorder.pump(typing)
        elif name.startswith("Ctrl+"):
            letter = name[len("Ctrl+"):].lower()
            recorder.send(chr(ord(letter) - ord("a") + 1))
        elif name == "Sleep":
            recorder.pump(duration(rest))
        elif name in ("Output", "Require", "Source", "Screenshot", "Wait"):
            continue
        else:
            print(f"record-demo: {where}: `{name}` ignored", file=sys.stderr)
    if recorder.pid is None:
        raise SystemExit("record-demo: the tape never started a program")
    recorder.finish(15)
    print(f"record-demo: wrote {args.out} ({len(recorder.events)} events)")


if __name__ == "__main__":
    main()
