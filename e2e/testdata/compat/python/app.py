"""A small web app on the standard library only, for the compatibility
suite (e2e/compat_test.go). route() is the app; lambda_function.py serves it
on Lambda's HTTP event (payload format 2.0), server.py as a plain HTTP
server."""

import hashlib
import json
import urllib.parse

LINE = b"the quick brown fox jumps over the lazy dog 0123456789\n"


def _json(status, value, extra=()):
    body = json.dumps(value, separators=(",", ":")).encode()
    return status, [("Content-Type", "application/json")] + list(extra), body


def _cookies(header):
    return [p.strip() for p in header.split(";") if p.strip()]


def route(method, raw_path, raw_query, headers, body):
    """route answers one request: method, the path as sent (percent-encoded),
    the raw query string, headers (lower-case name -> value) and the body
    (bytes). It returns (status, [(name, value)], body bytes)."""
    query = {}
    for k, v in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(k, []).append(v)
    path = urllib.parse.unquote(raw_path)
    parts = raw_path.split("/")
    if method in ("GET", "HEAD") and (raw_path == "/echo" or raw_path.startswith("/echo/")):
        return _json(200, {"method": method, "path": raw_path, "decoded": path, "query": query,
                           "cookies": _cookies(headers.get("cookie", ""))},
                     [("X-Multi", "one"), ("X-Multi", "two"), ("X-App", "python")])
    if method == "GET" and len(parts) == 5 and parts[1] == "users" and parts[3] == "items":
        return _json(200, {"id": urllib.parse.unquote(parts[2]), "item": urllib.parse.unquote(parts[4])})
    if method == "GET" and raw_path == "/cookies":
        return _json(200, {"cookies": _cookies(headers.get("cookie", ""))},
                     [("Set-Cookie", "session=abc123; Path=/; HttpOnly"),
                      ("Set-Cookie", "theme=dark; Path=/; Expires=Tue, 01 Jan 2030 00:00:00 GMT"),
                      ("Set-Cookie", "plain=1")])
    if method == "POST" and raw_path == "/binary":
        return 200, [("Content-Type", "application/octet-stream"),
                     ("X-Body-Sha256", hashlib.sha256(body).hexdigest())], body
    if method == "POST" and raw_path == "/json":
        try:
            got = json.loads(body or b"null")
        except ValueError:
            return _json(400, {"error": "bad json"})
        return _json(201, {"got": got, "keys": len(got) if isinstance(got, dict) else 0})
    if method == "GET" and raw_path == "/large":
        n = min(int(query.get("n", ["0"])[0] or 0), 4 << 20)
        data = (LINE * (n // len(LINE) + 1))[:n]
        return 200, [("Content-Type", "text/plain; charset=utf-8")], data
    if method == "GET" and raw_path == "/redirect":
        return 302, [("Location", "/elsewhere"), ("Content-Type", "text/plain")], b"see /elsewhere\n"
    if method == "GET" and raw_path == "/redirect-prefixed":
        loc = headers.get("x-forwarded-prefix", "") + "/elsewhere"
        return 302, [("Location", loc), ("Content-Type", "text/plain")], b"see " + loc.encode() + b"\n"
    if method == "GET" and raw_path == "/elsewhere":
        return 200, [("Content-Type", "text/plain; charset=utf-8")], b"elsewhere\n"
    if method == "GET" and raw_path == "/error":
        return _json(409, {"error": "conflict here"})
    if raw_path == "/crash":
        raise ValueError("secret detail from the handler")
    return _json(404, {"error": "not found", "path": raw_path})
