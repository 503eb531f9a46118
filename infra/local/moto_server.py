"""moto_server with DynamoDB's requests served one at a time.

moto (5.2.5) checks a DynamoDB condition expression and then writes, with no lock between the
two, and its server answers each request on a thread of its own: two concurrent conditional
writes on one item can both pass. Real DynamoDB never lets that happen, and Chorus rests on
it (one claim wins a step, a rate-limit grant is taken once), so the contract tests that race
writers against each other fail at random on a plain moto_server. Serializing DynamoDB's
requests gives them the atomicity DynamoDB has; SQS and S3 stay concurrent (a long poll must
not hold up the rest).

Usage: python moto_server.py [moto_server's arguments]   (infra/local/emulator.sh runs it)
"""

import threading

import moto.server
from werkzeug.serving import run_simple

_DYNAMODB = threading.Lock()


def serial_dynamodb(app):
    """Wraps the WSGI app: DynamoDB requests (JSON 1.0, `X-Amz-Target: DynamoDB_…`) hold one lock."""

    def wrapped(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with _DYNAMODB:
                # moto does the work inside the call; the body it returns is already bytes.
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wrapped


def run_serial(host, port, app, **options):
    run_simple(host, port, serial_dynamodb(app), **options)


if __name__ == "__main__":
    moto.server.run_simple = run_serial
    moto.server.main()
