"""The app of app.py as a Lambda handler on the HTTP event of payload
format 2.0 (function URLs, API Gateway HTTP APIs)."""

import base64

from app import route


def handler(event, context):
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if event.get("cookies"):
        headers["cookie"] = "; ".join(event["cookies"])
    body = (event.get("body") or "").encode()
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    method = event["requestContext"]["http"]["method"]
    status, hdrs, out = route(method, event.get("rawPath") or "/", event.get("rawQueryString") or "", headers, body)
    folded, cookies = {}, []
    for k, v in hdrs:
        if k.lower() == "set-cookie":
            cookies.append(v)
        elif k in folded:
            folded[k] += ", " + v
        else:
            folded[k] = v
    binary = folded.get("Content-Type", "").startswith("application/octet-stream")
    return {
        "statusCode": status,
        "headers": folded,
        "cookies": cookies,
        "body": base64.b64encode(out).decode() if binary else out.decode(),
        "isBase64Encoded": binary,
    }
