// Stratus Runtime API client for Node.js functions.
//
// Run as `node bootstrap.mjs` with the code in the working directory. It speaks
// the AWS Lambda Runtime API 2018-06-01 at AWS_LAMBDA_RUNTIME_API: it loads the
// handler named by _HANDLER ("file.function", the file may sit in a subfolder:
// "dir/file.function"; CommonJS or ES module), then loops forever fetching the
// next invocation, calling the handler with the decoded JSON event and a
// Lambda-style context, and posting the JSON result or the error back.
//
// Handlers may return a promise (async) or call the callback / context.done /
// succeed / fail; whichever settles first answers the invocation. A handler
// that does neither is answered with null once the event loop runs empty, as
// on Lambda. Only node built-ins are used; one keep-alive socket carries every
// request.

import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import util from 'node:util';

const API_PREFIX = '/2018-06-01/runtime';
const SELF = import.meta.url;

// RuntimeFault is an error the runtime reports with a Lambda runtime error type.
class RuntimeFault extends Error {
  constructor(errorType, message, stackTrace = []) {
    super(message);
    this.name = errorType;
    this.stackTrace = stackTrace;
  }
}

// ---- Runtime API client -----------------------------------------------------

function parseAddress(address) {
  const i = address.lastIndexOf(':');
  if (i < 0) return { host: address, port: 80 };
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

class RuntimeClient {
  constructor(address) {
    const { host, port } = parseAddress(address);
    this.host = host;
    this.port = port;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1, noDelay: true });
  }

  // request sends one request and resolves to {status, headers, body}. A
  // request on a reused socket that the server had closed is retried once.
  async request(method, p, body, headers) {
    try {
      return await this.send(method, p, body, headers);
    } catch (err) {
      if (!err.reusedSocket || (err.code !== 'ECONNRESET' && err.code !== 'EPIPE')) throw err;
      return this.send(method, p, body, headers);
    }
  }

  send(method, p, body, headers) {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: this.host, port: this.port, method, path: API_PREFIX + p, agent: this.agent, headers },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('error', (err) => {
        err.reusedSocket = req.reusedSocket;
        reject(err);
      });
      req.end(body);
    });
  }

  async next() {
    const res = await this.request('GET', '/invocation/next', undefined, {});
    if (res.status !== 200) {
      throw new Error(`get next invocation: status ${res.status}: ${res.body.toString('utf8', 0, 200)}`);
    }
    return res;
  }

  async post(p, body, errorType) {
    const buf = Buffer.from(body, 'utf8');
    const headers = { 'Content-Type': 'application/json', 'Content-Length': buf.length };
    if (errorType !== undefined) headers['Lambda-Runtime-Function-Error-Type'] = headerSafe(errorType);
    const res = await this.request('POST', p, buf, headers);
    const detail = `post ${p}: status ${res.status}: ${res.body.toString('utf8', 0, 200)}`;
    if (res.status >= 500) throw new Error(detail);
    // The platform refused this one result (too large, wrong state); the
    // runtime itself is fine, so log and carry on.
    if (res.status >= 300) writeLog(process.stderr, 'ERROR', detail);
  }
}

function headerSafe(value) {
  const s = String(value).replace(/[^\x20-\x7e]/g, '');
  return s || 'Unhandled';
}

// ---- logging ------------------------------------------------------------------

let currentRequestId;

function writeLog(stream, level, message) {
  stream.write(`${new Date().toISOString()}\t${currentRequestId ?? 'undefined'}\t${level}\t${message}\n`);
}

// patchConsole gives console output Lambda's line format: time, request id, level.
function patchConsole() {
  const levels = [
    ['log', 'INFO', process.stdout],
    ['info', 'INFO', process.stdout],
    ['debug', 'DEBUG', process.stdout],
    ['warn', 'WARN', process.stderr],
    ['error', 'ERROR', process.stderr],
  ];
  for (const [method, level, stream] of levels) {
    console[method] = (...args) => writeLog(stream, level, util.format(...args));
  }
  console.trace = (...args) => {
    const err = { name: 'Trace', message: util.format(...args) };
    Error.captureStackTrace(err, console.trace);
    writeLog(process.stderr, 'TRACE', err.stack);
  };
}

// ---- errors -------------------------------------------------------------------

// errorBody describes whatever a handler threw or passed to its callback.
function errorBody(err) {
  try {
    if (err instanceof RuntimeFault) {
      return { errorMessage: err.message, errorType: err.name, stackTrace: err.stackTrace };
    }
    if (err instanceof Error || util.types.isNativeError(err)) {
      const stack = typeof err.stack === 'string' ? userFrames(err.stack.split('\n')) : [];
      return { errorMessage: String(err.message ?? ''), errorType: String(err.name ?? 'Error'), stackTrace: stack };
    }
    return { errorMessage: String(err), errorType: typeof err, stackTrace: [] };
  } catch {
    return { errorMessage: 'the handler failed with a value that cannot be described', errorType: 'handled', stackTrace: [] };
  }
}

// userFrames drops the frames from the first one of this client on: what
// called the handler is no concern of the function's author.
function userFrames(lines) {
  const i = lines.findIndex((line) => line.includes(SELF));
  return i < 0 ? lines : lines.slice(0, i);
}

function stringifyError(body) {
  return JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
}

// ---- handler loading ----------------------------------------------------------

const require = createRequire(import.meta.url);

// packageType returns the "type" of the package.json nearest to dir.
function packageType(dir) {
  for (;;) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
      return pkg.type === 'module' ? 'module' : 'commonjs';
    } catch (err) {
      if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') return 'commonjs';
    }
    const parent = path.dirname(dir);
    if (parent === dir) return 'commonjs';
    dir = parent;
  }
}

async function importFile(file) {
  return import(pathToFileURL(file).href);
}

function requireFile(file) {
  try {
    return require(file);
  } catch (err) {
    if (err.code === 'ERR_REQUIRE_ESM' || err.code === 'ERR_REQUIRE_ASYNC_MODULE') return importFile(file);
    throw err;
  }
}

async function loadModule(base, name) {
  for (const ext of ['.js', '.mjs', '.cjs']) {
    const file = base + ext;
    if (!fs.existsSync(file)) continue;
    if (ext === '.mjs') return importFile(file);
    if (ext === '.cjs') return requireFile(file);
    return packageType(path.dirname(file)) === 'module' ? importFile(file) : requireFile(file);
  }
  throw new RuntimeFault('Runtime.ImportModuleError', `Error: Cannot find module '${name}'`);
}

// waitForStart: a prepared sandbox starts this client ahead of its first
// call, with _STRATUS_START_FD naming a pipe; the client waits here, loaded,
// for the one byte the sandbox's start writes, before it loads the
// function's code. End of file means the sandbox was dropped unstarted.
// The variable is not left for the function to see.
function waitForStart() {
  const name = '_STRATUS_START_FD';
  const fd = process.env[name];
  if (fd === undefined) return true;
  delete process.env[name];
  const buf = Buffer.alloc(1);
  const n = fs.readSync(Number(fd), buf, 0, 1, null);
  fs.closeSync(Number(fd));
  return n === 1;
}

// loadHandler resolves spec ("dir/file.a.b") to the function it names.
async function loadHandler(taskRoot, spec) {
  const slash = spec.lastIndexOf('/');
  const dir = spec.slice(0, slash + 1);
  const rest = spec.slice(slash + 1);
  const dot = rest.indexOf('.');
  if (dot <= 0 || dot === rest.length - 1) {
    throw new RuntimeFault('Runtime.MalformedHandlerName', `Bad handler ${spec}`);
  }
  const name = dir + rest.slice(0, dot);
  let mod;
  try {
    mod = await loadModule(path.resolve(taskRoot, name), name);
  } catch (err) {
    if (err instanceof RuntimeFault) throw err;
    if (err instanceof SyntaxError) {
      throw new RuntimeFault('Runtime.UserCodeSyntaxError', `${err.name}: ${err.message}`, errorBody(err).stackTrace);
    }
    if (err?.code === 'MODULE_NOT_FOUND' || err?.code === 'ERR_MODULE_NOT_FOUND') {
      throw new RuntimeFault('Runtime.ImportModuleError', String(err), errorBody(err).stackTrace);
    }
    throw err;
  }
  let fn = mod;
  for (const key of rest.slice(dot + 1).split('.')) fn = fn == null ? undefined : fn[key];
  if (typeof fn !== 'function') {
    throw new RuntimeFault('Runtime.HandlerNotFound', `${spec} is undefined or not exported`);
  }
  return fn;
}

// ---- invocations --------------------------------------------------------------

function parseJSONHeader(value) {
  if (!value) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

function functionConfig(env) {
  return {
    functionName: env.AWS_LAMBDA_FUNCTION_NAME ?? '',
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION ?? '$LATEST',
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? '128',
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME ?? '',
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME ?? '',
  };
}

function makeContext(config, headers) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']) || 0;
  const ctx = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: config.functionName,
    functionVersion: config.functionVersion,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'] ?? '',
    memoryLimitInMB: config.memoryLimitInMB,
    awsRequestId: headers['lambda-runtime-aws-request-id'] ?? '',
    logGroupName: config.logGroupName,
    logStreamName: config.logStreamName,
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
  };
  const cognito = parseJSONHeader(headers['lambda-runtime-cognito-identity']);
  if (cognito) {
    ctx.identity = { cognitoIdentityId: cognito.cognitoIdentityId, cognitoIdentityPoolId: cognito.cognitoIdentityPoolId };
  }
  const clientContext = parseJSONHeader(headers['lambda-runtime-client-context']);
  if (clientContext) ctx.clientContext = clientContext;
  return ctx;
}

// runHandler calls fn and settles with the first of: its promise, its
// callback (or context.done/succeed/fail), or the event loop running empty.
function runHandler(fn, event, ctx) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (failed, value) => {
      if (settled) return;
      settled = true;
      process.removeListener('beforeExit', onEmptyLoop);
      if (failed) reject(value);
      else resolve(value);
    };
    const onEmptyLoop = () => settle(false, undefined);
    const callback = (err, result) => (err === undefined || err === null ? settle(false, result) : settle(true, err));
    ctx.done = callback;
    ctx.succeed = (result) => settle(false, result);
    ctx.fail = (err) => settle(true, err ?? 'handled');
    process.once('beforeExit', onEmptyLoop);
    let ret;
    try {
      ret = fn(event, ctx, callback);
    } catch (err) {
      settle(true, err);
      return;
    }
    if (ret !== null && typeof ret === 'object' && typeof ret.then === 'function') {
      ret.then((result) => settle(false, result), (err) => settle(true, err));
    }
  });
}

function setTraceId(traceId) {
  if (traceId) process.env._X_AMZN_TRACE_ID = traceId;
  else delete process.env._X_AMZN_TRACE_ID;
}

async function invoke(client, config, handler, inv) {
  const requestId = inv.headers['lambda-runtime-aws-request-id'] ?? '';
  currentRequestId = requestId;
  setTraceId(inv.headers['lambda-runtime-trace-id']);
  let payload;
  try {
    let event = null;
    if (inv.body.length > 0) {
      try {
        event = JSON.parse(inv.body.toString('utf8'));
      } catch (err) {
        throw new RuntimeFault('Runtime.UnmarshalError', `Unable to unmarshal input: ${err.message}`);
      }
    }
    const result = await runHandler(handler, event, makeContext(config, inv.headers));
    try {
      payload = JSON.stringify(result) ?? 'null';
    } catch (err) {
      throw new RuntimeFault('Runtime.MarshalError', `Unable to stringify response body: ${err.message}`);
    }
  } catch (err) {
    const body = errorBody(err);
    writeLog(process.stderr, 'ERROR', `Invoke Error \t${stringifyError(body)}`);
    await client.post(`/invocation/${encodeURIComponent(requestId)}/error`, stringifyError(body), body.errorType);
    return;
  }
  await client.post(`/invocation/${encodeURIComponent(requestId)}/response`, payload);
}

// ---- main ---------------------------------------------------------------------

async function main() {
  const address = process.env.AWS_LAMBDA_RUNTIME_API;
  if (!address) {
    process.stderr.write('bootstrap: AWS_LAMBDA_RUNTIME_API is not set\n');
    process.exit(1);
  }
  const client = new RuntimeClient(address);
  const taskRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const config = functionConfig(process.env);
  patchConsole();

  // An error nobody catches (a throw in a timer, an unhandled rejection)
  // fails the invocation in flight, or init, and ends the process.
  let inInit = true;
  let crashing = false;
  const crash = async (body, label) => {
    if (crashing) return;
    crashing = true;
    writeLog(process.stderr, 'ERROR', `${label} \t${stringifyError(body)}`);
    try {
      if (inInit) await client.post('/init/error', stringifyError(body), body.errorType);
      else if (currentRequestId !== undefined) {
        await client.post(`/invocation/${encodeURIComponent(currentRequestId)}/error`, stringifyError(body), body.errorType);
      }
    } finally {
      process.exit(1);
    }
  };
  process.on('uncaughtException', (err) => crash(errorBody(err), 'Uncaught Exception'));
  process.on('unhandledRejection', (reason) => {
    const body = errorBody(reason);
    body.errorType = 'Runtime.UnhandledPromiseRejection';
    try {
      body.errorMessage = String(reason);
    } catch {
      // keep errorBody's message
    }
    crash(body, 'Unhandled Promise Rejection');
  });

  if (!waitForStart()) process.exit(0);
  let handler;
  try {
    handler = await loadHandler(taskRoot, process.env._HANDLER ?? '');
  } catch (err) {
    const body = errorBody(err);
    writeLog(process.stderr, 'ERROR', `Init Error \t${stringifyError(body)}`);
    await client.post('/init/error', stringifyError(body), body.errorType);
    process.exit(1);
  }
  inInit = false;

  for (;;) {
    const inv = await client.next();
    await invoke(client, config, handler, inv);
    currentRequestId = undefined;
  }
}

main().catch((err) => {
  process.stderr.write(`bootstrap: ${err?.stack ?? err}\n`);
  process.exit(1);
});
