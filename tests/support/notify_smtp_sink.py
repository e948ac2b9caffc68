"""A real SMTP server for the notification tests: aiosmtpd on 127.0.0.1, writing each message
it accepts to DIR/msg-<pid>-<n>.json as {"mail_from", "rcpt_tos", "data", "login", "tls"}
(written to a temporary name first and renamed, so a reader never sees half a file). Prints
"listening" once it accepts connections; runs until SIGTERM or SIGINT.

Usage: /usr/bin/python3 tests/support/notify_smtp_sink.py --port PORT --dir DIR
           [--tls starttls|implicit --cert CERT.pem --key KEY.pem] [--auth USER:PASSWORD]
           [--refuse]   (answers every message 554: a mail server that refuses)
(Debian's python3-aiosmtpd is installed for /usr/bin/python3, see scripts/setup.)
"""

import argparse
import itertools
import json
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, directory, refuse=False):
        self.directory = directory
        self.refuse = refuse
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return "554 5.7.1 Message refused (test sink told to refuse)"
        with self.lock:
            number = next(self.counter)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": envelope.original_content.decode("utf-8", "replace"),
            "login": login,
            # Set for implicit TLS and after STARTTLS alike.
            "tls": server.transport.get_extra_info("ssl_object") is not None,
        }
        # Unique per process too: a restarted sink must not overwrite the first one's files.
        name = "msg-%d-%06d.json" % (os.getpid(), number)
        temporary = os.path.join(self.directory, "." + name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.rename(temporary, os.path.join(self.directory, name))
        return "250 Message accepted for delivery"


def authenticator_for(expected_user, expected_password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == expected_user
            and auth_data.password.decode() == expected_password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return authenticate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tls", choices=["starttls", "implicit"])
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth", help="USER:PASSWORD required before MAIL")
    parser.add_argument("--refuse", action="store_true", help="answer every message 554")
    args = parser.parse_args()

    options = {}
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    if args.tls == "starttls":
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)
        options.update(
            authenticator=authenticator_for(user, password),
            auth_required=True,
            # aiosmtpd only knows about STARTTLS; an implicit-TLS connection is TLS too.
            auth_require_tls=args.tls == "starttls",
        )
    controller = Controller(
        Sink(args.dir, refuse=args.refuse),
        hostname="127.0.0.1",
        port=args.port,
        ssl_context=context if args.tls == "implicit" else None,
        **options,
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("listening on 127.0.0.1:%d" % args.port, flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
