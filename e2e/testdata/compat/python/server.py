"""The app of app.py run directly on http.server: listens on 127.0.0.1 on a
free port and prints "listening on PORT"."""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from app import route


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.headers.get_all("Cookie"):
            headers["cookie"] = "; ".join(self.headers.get_all("Cookie"))
        try:
            status, hdrs, out = route(self.command, path, query, headers, body)
        except Exception:
            status, hdrs, out = 500, [("Content-Type", "text/plain")], b"internal error\n"
        self.send_response(status)
        for k, v in hdrs:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _serve

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening on %d" % srv.server_address[1], flush=True)
    srv.serve_forever()
