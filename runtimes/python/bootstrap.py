"""Stratus Runtime API client for Python functions.

Run as `python3 -u bootstrap.py` with the code in the working directory. It
speaks the AWS Lambda Runtime API 2018-06-01 at AWS_LAMBDA_RUNTIME_API: it
imports the handler named by _HANDLER ("module.function", the module may sit in
a subfolder: "dir/module.function"), then loops forever fetching the next
invocation, calling the handler with the decoded JSON event and a Lambda-style
context object, and posting the JSON result or the error back.

Only the standard library is used. One keep-alive HTTP connection carries every
request, so a no-op invocation costs two small round trips on loopback.
"""

import decimal
import http.client
import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
JSON_HEADERS = {"Content-Type": "application/json"}


class RuntimeClient:
    """Talks to the Runtime API over one persistent HTTP/1.1 connection."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        if not host:
            host, port = address, "80"
        self.host = host.strip("[]")
        self.port = int(port)
        self.conn = None

    def _connect(self):
        conn = http.client.HTTPConnection(self.host, self.port)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn

    def _close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None):
        """Sends one request and returns (status, headers, body).

        A request on a reused connection that the server closed while idle is
        retried once on a fresh connection: it never reached the server.
        """
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self._connect()
            try:
                self.conn.request(method, API_PREFIX + path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._close()
                if fresh or attempt:
                    raise
                continue
            except Exception:
                self._close()
                raise
            if resp.will_close:
                self._close()
            return resp.status, resp.headers, data
        raise AssertionError("unreachable")

    def next(self):
        status, headers, body = self.request("GET", "/invocation/next")
        if status != 200:
            raise RuntimeError("get next invocation: status %d: %s" % (status, body[:200]))
        return headers, body

    def post(self, path, body, error_type=None):
        headers = dict(JSON_HEADERS)
        if error_type is not None:
            headers["Lambda-Runtime-Function-Error-Type"] = header_safe(error_type)
        status, _, data = self.request("POST", path, body, headers)
        if status >= 500:
            raise RuntimeError("post %s: status %d: %s" % (path, status, data[:200]))
        if status >= 300:
            # The platform refused this one result (too large, wrong state);
            # the runtime itself is fine, so log and move on.
            log_line("ERROR", "post %s: status %d: %s" % (path, status, data[:200].decode("utf-8", "replace")))


def header_safe(value):
    """Keeps printable ASCII only, as HTTP header values must be."""
    out = "".join(c for c in str(value) if " " <= c <= "~")
    return out or "Unhandled"


def log_line(level, message, request_id=""):
    sys.stdout.write("[%s]\t%s\t%s\t%s\n" % (level, utc_now(), request_id, message))
    sys.stdout.flush()


def utc_now():
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000)


# ---- context -----------------------------------------------------------------


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity_id=None, pool_id=None):
        self.cognito_identity_id = identity_id
        self.cognito_identity_pool_id = pool_id

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id,
            self.cognito_identity_pool_id,
        )


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self, d):
        self.installation_id = d.get("installation_id")
        self.app_title = d.get("app_title")
        self.app_version_name = d.get("app_version_name")
        self.app_version_code = d.get("app_version_code")
        self.app_package_name = d.get("app_package_name")


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, d):
        client = d.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = d.get("custom")
        self.env = d.get("env")


class FunctionConfig:
    """What the platform says about the function; fixed for the process."""

    def __init__(self, environ):
        self.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        try:
            self.memory_limit_in_mb = int(environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        except ValueError:
            self.memory_limit_in_mb = 128
        self.log_group_name = environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")


class LambdaContext:
    """The context object handlers receive, with Lambda's Python field names."""

    __slots__ = (
        "function_name",
        "function_version",
        "invoked_function_arn",
        "memory_limit_in_mb",
        "aws_request_id",
        "log_group_name",
        "log_stream_name",
        "identity",
        "client_context",
        "_deadline_ms",
    )

    def __init__(self, config, request_id, deadline_ms, arn, identity, client_context):
        self.function_name = config.function_name
        self.function_version = config.function_version
        self.memory_limit_in_mb = config.memory_limit_in_mb
        self.log_group_name = config.log_group_name
        self.log_stream_name = config.log_stream_name
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.identity = identity
        self.client_context = client_context
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg):
        sys.stdout.write(str(msg))
        sys.stdout.flush()

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,function_name=%s,"
            "memory_limit_in_mb=%s,function_version=%s,invoked_function_arn=%s,client_context=%s,identity=%s])"
            % (
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
            )
        )


def parse_json_header(value):
    if not value:
        return None
    try:
        v = json.loads(value)
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def make_context(config, headers):
    try:
        deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
    except ValueError:
        deadline_ms = 0
    cognito = parse_json_header(headers.get("Lambda-Runtime-Cognito-Identity")) or {}
    identity = CognitoIdentity(cognito.get("cognitoIdentityId"), cognito.get("cognitoIdentityPoolId"))
    client = parse_json_header(headers.get("Lambda-Runtime-Client-Context"))
    return LambdaContext(
        config,
        headers.get("Lambda-Runtime-Aws-Request-Id", ""),
        deadline_ms,
        headers.get("Lambda-Runtime-Invoked-Function-Arn", ""),
        identity,
        ClientContext(client) if client is not None else None,
    )


# ---- errors ------------------------------------------------------------------


class FaultError(Exception):
    """An error the runtime reports with a Lambda runtime error type."""

    def __init__(self, error_type, message, stack=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack or []


def user_stack(tb):
    """Formats the traceback frames of user code (not the runtime's), as Lambda does."""
    frames = traceback.extract_tb(tb)
    here = os.path.abspath(__file__)
    kept = [f for f in frames if os.path.abspath(f.filename) != here and not f.filename.startswith("<frozen importlib")]
    return traceback.format_list(kept)


def error_body(error_type, message, stack):
    return json.dumps(
        {"errorMessage": message, "errorType": error_type, "stackTrace": stack},
        ensure_ascii=False,
        default=str,
    ).encode("utf-8")


def describe(exc):
    """Returns (errorType, errorMessage, stackTrace) for an exception."""
    if isinstance(exc, FaultError):
        return exc.error_type, exc.message, exc.stack
    try:
        message = str(exc)
    except Exception:
        message = "<%s: str() failed>" % type(exc).__name__
    return type(exc).__name__, message, user_stack(exc.__traceback__)


def log_error(error_type, message, stack, request_id=""):
    lines = ["%s: %s" % (error_type, message)]
    if stack:
        lines.append("Traceback (most recent call last):")
        lines.extend(s.rstrip("\n") for s in stack)
    log_line("ERROR", "\n".join(lines), request_id)


# ---- handler loading ---------------------------------------------------------


def load_handler(spec):
    """Imports the module of spec ("dir/module.function") and returns the function."""
    modpath, dot, fname = spec.rpartition(".")
    if not dot or not modpath or not fname:
        raise FaultError("Runtime.MalformedHandlerName", "Bad handler '%s': not enough values to unpack (expected 2, got 1)" % spec)
    modname = modpath.replace("/", ".")
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise FaultError("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (modname, e)) from None
    except SyntaxError as e:
        raise FaultError(
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '%s': %s" % (modname, e),
            user_stack(e.__traceback__),
        ) from None
    fn = getattr(module, fname, None)
    if fn is None or not callable(fn):
        raise FaultError("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fname, modname))
    return fn


# ---- serialisation -----------------------------------------------------------


class ResultEncoder(json.JSONEncoder):
    """Encodes what DynamoDB-style handlers commonly return (Decimal)."""

    def default(self, o):
        if isinstance(o, decimal.Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        return super().default(o)


def encode_result(result):
    try:
        return json.dumps(result, cls=ResultEncoder, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise FaultError("Runtime.MarshalError", "Unable to marshal response: %s" % e) from None


def decode_event(body):
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError as e:
        raise FaultError("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e) from None


# ---- logging -----------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record):
        record.aws_request_id = RequestIdFilter.request_id
        return True


def setup_logging():
    """Gives the root logger Lambda's line format: level, time, request id."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    handler.formatter.converter = time.gmtime
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        root.setLevel(level)


# ---- main loop ---------------------------------------------------------------


def invoke(client, config, handler, headers, body):
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    RequestIdFilter.request_id = request_id
    try:
        event = decode_event(body)
        ctx = make_context(config, headers)
        payload = encode_result(handler(event, ctx))
    except Exception as e:
        error_type, message, stack = describe(e)
        log_error(error_type, message, stack, request_id)
        client.post("/invocation/%s/error" % request_id, error_body(error_type, message, stack), error_type)
        return
    client.post("/invocation/%s/response" % request_id, payload)


def wait_for_start():
    """A prepared sandbox starts this client ahead of its first call, with
    _STRATUS_START_FD naming a pipe: wait here, loaded, for the one byte the
    sandbox's start writes, before the function's code is loaded. End of
    file means the sandbox was dropped unstarted. The variable is not left
    for the function to see."""
    fd = os.environ.pop("_STRATUS_START_FD", None)
    if fd is None:
        return True
    try:
        return len(os.read(int(fd), 1)) == 1
    finally:
        os.close(int(fd))


def main():
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        sys.stderr.write("bootstrap: AWS_LAMBDA_RUNTIME_API is not set\n")
        return 1
    client = RuntimeClient(address)
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    if task_root in sys.path:
        sys.path.remove(task_root)
    sys.path.insert(0, task_root)
    # The bootstrap's own folder must not shadow the function's modules.
    here = os.path.dirname(os.path.abspath(__file__))
    if here != task_root and here in sys.path:
        sys.path.remove(here)
    setup_logging()
    config = FunctionConfig(os.environ)

    if not wait_for_start():
        return 0
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Exception as e:
        error_type, message, stack = describe(e)
        log_error(error_type, message, stack)
        client.post("/init/error", error_body(error_type, message, stack), error_type)
        return 1

    while True:
        headers, body = client.next()
        invoke(client, config, handler, headers, body)


if __name__ == "__main__":
    sys.exit(main())
