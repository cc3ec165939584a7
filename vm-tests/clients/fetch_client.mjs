// GET --url in a loop with Node.js' built-in fetch (undici), default
// settings: undici's global Agent keeps the connection alive and reuses it
// (it closes an idle one before the server's `Keep-Alive: timeout=`). fetch
// retries nothing of its own accord. Node built-ins only.
//
//   node fetch_client.mjs --url URL --report FILE [--interval S] [--timeout S]
//                         [--pause-every N] [--pause S]
//
// Paces its requests and writes its report as client_report.py describes
// (rewritten every 0.2 s,
// "final": true once stopped by SIGTERM or SIGINT). Connections are counted
// from undici's diagnostics channel "undici:client:connected".

import diagnosticsChannel from "node:diagnostics_channel";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";

const VERSION_HEADER = "x-hitless-version";
const MAX_FAILURES = 100;
const REWRITE_MS = 200;

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    report: { type: "string" },
    interval: { type: "string", default: "0.01" },
    timeout: { type: "string", default: "10" },
    "pause-every": { type: "string", default: "0" },
    pause: { type: "string", default: "0.25" },
  },
});
if (!opts.url || !opts.report) {
  console.error("usage: fetch_client.mjs --url URL --report FILE [--interval S] [--timeout S] [--pause-every N] [--pause S]");
  process.exit(2);
}
const intervalMs = Number(opts.interval) * 1000;
const timeoutMs = Number(opts.timeout) * 1000;
const pauseEvery = Number(opts["pause-every"]);
const pauseMs = Number(opts.pause) * 1000;

// Node.js reports the undici it bundles; a distribution's build may use a
// shared undici instead (Debian: node-undici), named in process.config.
function undiciVersion() {
  if (process.versions.undici) return process.versions.undici;
  const prefix = "NODE_SHARED_BUILTIN_UNDICI_UNDICI_PATH=";
  const shared = (process.config.target_defaults?.defines ?? []).find((d) => d.startsWith(prefix));
  if (!shared) return "unknown";
  const dir = dirname(shared.slice(prefix.length));
  try {
    return `${JSON.parse(readFileSync(`${dir}/package.json`, "utf8")).version} (shared, ${dir})`;
  } catch {
    return `unknown (shared, ${dir})`;
  }
}

const t0 = performance.now();
const report = {
  client: "node-fetch",
  library: `node ${process.version}, undici ${undiciVersion()}`,
  method: "GET",
  requests: 0,
  ok: 0,
  failed: 0,
  errors: {},
  failures: [],
  versions: [],
  connections: 0,
  seconds: 0,
  final: false,
};
let lastWrite = 0;

diagnosticsChannel.channel("undici:client:connected").subscribe(() => {
  report.connections += 1;
});

function write(final = false) {
  report.seconds = Math.round(performance.now() - t0) / 1000;
  report.final = final;
  const tmp = `${opts.report}.tmp`;
  writeFileSync(tmp, JSON.stringify(report) + "\n");
  renameSync(tmp, opts.report);
  lastWrite = performance.now();
}

function failure(error) {
  report.failed += 1;
  report.errors[error] = (report.errors[error] ?? 0) + 1;
  if (report.failures.length < MAX_FAILURES) {
    report.failures.push({ at_s: Math.round(performance.now() - t0) / 1000, error });
  }
}

// fetch's own error is a bare "TypeError: fetch failed"; what happened is
// in its cause (undici's SocketError, ECONNRESET, ...).
function describe(err) {
  let text = `${err.name}: ${err.message}`;
  for (let c = err.cause; c; c = c.cause) {
    text += ` (cause: ${c.name ?? "Error"}${c.code ? ` ${c.code}` : ""}: ${c.message})`;
  }
  return text;
}

let stop = false;
let wake = null;
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    stop = true;
    if (wake) wake();
  });
}

while (!stop) {
  report.requests += 1;
  try {
    const resp = await fetch(opts.url, { signal: AbortSignal.timeout(timeoutMs) });
    await resp.arrayBuffer();
    const version = resp.headers.get(VERSION_HEADER);
    if (version && report.versions.at(-1) !== version) report.versions.push(version);
    if (resp.status !== 200) failure(`status ${resp.status} (expected 200)`);
    else if (!version) failure(`no ${VERSION_HEADER} header`);
    else report.ok += 1;
  } catch (err) {
    failure(describe(err));
  }
  if (performance.now() - lastWrite >= REWRITE_MS) write();
  await new Promise((resolve) => {
    wake = resolve;
    const pause = pauseEvery > 0 && report.requests % pauseEvery === 0;
    setTimeout(resolve, pause ? pauseMs : intervalMs);
  });
}
write(true);
