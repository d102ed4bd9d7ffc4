"""A small real upstream for the why502 scenarios: a WSGI app (for gunicorn: upstream_app:app)
that also runs standalone on the system python's threaded http.server:

    /usr/bin/python3 upstream_app.py PORT

Paths: /        200 "ok"
       /slow    sleep 3 s, then 200
       /alloc   allocate and touch memory until the OOM killer ends the process
"""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_hoard = []


def handle(path):
    if path.startswith("/alloc"):
        while True:
            _hoard.append(b"x" * (8 << 20))  # bytes are filled, so every page is touched
    if path.startswith("/slow"):
        time.sleep(3)
    return b"ok\n"


def app(environ, start_response):
    body = handle(environ.get("PATH_INFO", "/"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = handle(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
