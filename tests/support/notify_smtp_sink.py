"""A real SMTP server for the notification tests: aiosmtpd on 127.0.0.1, writing each message
it accepts to DIR/msg-<n>.json as {"mail_from", "rcpt_tos", "data"} (written to a temporary
name first and renamed, so a reader never sees half a file). Runs until SIGTERM or SIGINT.

Usage: /usr/bin/python3 tests/support/notify_smtp_sink.py --port PORT --dir DIR
(Debian's python3-aiosmtpd is installed for /usr/bin/python3, see scripts/setup.)
"""

import argparse
import itertools
import json
import os
import signal
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            number = next(self.counter)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": envelope.original_content.decode("utf-8", "replace"),
        }
        # Unique per process too: a restarted sink must not overwrite the first one's files.
        name = "msg-%d-%06d.json" % (os.getpid(), number)
        temporary = os.path.join(self.directory, "." + name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.rename(temporary, os.path.join(self.directory, name))
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    controller = Controller(Sink(args.dir), hostname="127.0.0.1", port=args.port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("listening on 127.0.0.1:%d" % args.port, flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
