#!/usr/bin/env node
// Drives livekit-client in headless Chromium for lkproto's interop tests (see harness.py).
//
//   node driver.mjs [--user-data-dir DIR [--remove-user-data-dir]] [--chromium PATH]
//                   [--extra-chromium-arg ARG]... [--no-loopback-flags]
//
// 1. serves dist/ (built by build.mjs) on http://127.0.0.1:<free port>/ (never file://);
// 2. launches Debian's Chromium through playwright-core with exactly the flags below (Playwright's
//    own default switches are turned off with ignoreDefaultArgs) and a fresh --user-data-dir;
// 3. opens the page and speaks line-delimited JSON on stdin/stdout:
//      in:  {"id": 1, "op": "connect", "url": "...", "token": "..."}
//      out: {"id": 1, "ok": true, "result": ...}  |  {"id": 1, "ok": false, "error": {...}}
//      out: {"event": {"type": "DataReceived", "seq": 3, ...}}   (pushed as they happen)
//      out: {"ready": true, ...}  once, first, when the page is loaded
//    Ops are run concurrently. Driver ops: ping, versions, close; every other op is the page's
//    (page/entry.js). stdout carries only these lines; logs go to stderr.
// 4. on {"op": "close"}, stdin EOF, SIGTERM, SIGINT or SIGHUP: closes Chromium, the HTTP server
//    and removes the user-data-dir, then exits.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const DIST = join(here, 'dist');

// The project's mandated switches (project guide), in this order.
const MANDATED_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--allow-loopback-in-peer-connection',
];

// Added so that nothing leaves 127.0.0.1 (measured with tcpdump; see harness.py's docstring):
// - without WebRtcHideLocalIpsWithMdns Chromium registers mDNS names for its host candidates and
//   announces them by multicast (224.0.0.251:5353, IGMP joins) on the non-loopback interfaces;
//   livekit-server drops `.local` candidates anyway (rtc.use_mdns is off), so ICE does not need
//   them: it pairs peer-reflexively on 127.0.0.1 with or without this switch;
// - the host-resolver rule stops every DNS lookup (Debian's wrapper turns on remote extensions, and
//   Chromium then resolves clients2.google.com, update.googleapis.com and accounts.google.com at
//   start-up despite --disable-background-networking); the page only uses IP literals.
const LOOPBACK_FLAGS = [
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
];

function parseArgs(argv) {
  const out = {
    userDataDir: null,
    removeUserDataDir: false,
    chromium: '/usr/bin/chromium',
    extra: [],
    noLoopbackFlags: false,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a === '--user-data-dir') out.userDataDir = argv[++i];
    else if (a === '--remove-user-data-dir') out.removeUserDataDir = true;
    else if (a === '--chromium') out.chromium = argv[++i];
    else if (a === '--extra-chromium-arg') out.extra.push(argv[++i]);
    else if (a === '--no-loopback-flags') out.noLoopbackFlags = true;
    else throw new Error(`driver: unknown argument ${a}`);
  }
  return out;
}

const log = (...parts) => process.stderr.write(`[driver] ${parts.join(' ')}\n`);
const send = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
};

function serveDist() {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://127.0.0.1').pathname;
    const rel = path === '/' ? 'index.html' : decodeURIComponent(path.slice(1));
    const file = normalize(join(DIST, rel));
    if (req.method !== 'GET' || !file.startsWith(DIST + sep)) {
      res.writeHead(404).end();
      return;
    }
    let body;
    try {
      if (!statSync(file).isFile()) throw new Error('not a file');
      body = readFileSync(file);
    } catch {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'content-type': MIME[extname(file)] ?? 'application/octet-stream',
      'cache-control': 'no-store',
    });
    res.end(body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  // A temp profile per run, removed on exit (also when the harness that made it died).
  let ownUserDataDir = opts.removeUserDataDir;
  if (!opts.userDataDir) {
    opts.userDataDir = mkdtempSync(join(tmpdir(), 'lkproto-chromium-'));
    ownUserDataDir = true;
  }
  const flags = [
    ...MANDATED_FLAGS,
    ...(opts.noLoopbackFlags ? [] : LOOPBACK_FLAGS),
    ...opts.extra,
  ];

  let httpServer = null;
  let browser = null;
  let closing = null;

  const shutdown = (code) => {
    if (closing) return closing;
    closing = (async () => {
      const timer = setTimeout(() => {
        log('shutdown timed out; exiting (Playwright kills Chromium on exit)');
        process.exit(code || 1);
      }, 10_000);
      try {
        if (browser) await browser.close().catch((e) => log('browser.close:', e.message));
        if (httpServer) {
          httpServer.closeAllConnections?.();
          await new Promise((r) => httpServer.close(() => r()));
        }
      } finally {
        if (ownUserDataDir) rmSync(opts.userDataDir, { recursive: true, force: true });
        clearTimeout(timer);
      }
      process.exit(code);
    })();
    return closing;
  };
  // The harness is gone (EPIPE on our pipes): clean up rather than die on the unhandled error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', () => shutdown(0));
  }
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGPIPE']) {
    process.on(sig, () => {
      log(`got ${sig}`);
      shutdown(0);
    });
  }

  try {
    if (!statSync(join(DIST, 'lk-page.js'), { throwIfNoEntry: false })) {
      throw new Error(`${join(DIST, 'lk-page.js')} is missing: run tools/setup_browser.sh`);
    }
    httpServer = await serveDist();
    const pageUrl = `http://127.0.0.1:${httpServer.address().port}/`;

    const args = [
      ...flags,
      `--user-data-dir=${opts.userDataDir}`,
      // Playwright's transport (ignoreDefaultArgs drops its own copy of this switch).
      '--remote-debugging-pipe',
      '--no-startup-window',
    ];
    log('chromium', opts.chromium, args.join(' '));
    browser = await chromium.launch({
      executablePath: opts.chromium,
      headless: true,
      ignoreDefaultArgs: true,
      args,
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      timeout: 60_000,
    });
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('console', (m) => log(`console.${m.type()}:`, m.text()));
    page.on('pageerror', (e) => log('pageerror:', e.stack ?? e.message));
    page.on('crash', () => {
      log('page crashed');
      send({ fatal: 'page crashed' });
      shutdown(1);
    });
    browser.on('disconnected', () => {
      if (!closing) {
        log('browser disconnected');
        send({ fatal: 'browser disconnected' });
        shutdown(1);
      }
    });
    await page.exposeFunction('__lkEmit', (ev) => {
      send({ event: ev });
    });
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.lk && window.lk.ready === true, null, {
      timeout: 30_000,
    });
    const pingResult = await page.evaluate(() => window.lk.call('ping', {}));
    const versions = {
      chromium: browser.version(),
      livekit_client: pingResult.result.livekit_client,
      playwright_core: JSON.parse(
        readFileSync(join(here, 'node_modules', 'playwright-core', 'package.json'), 'utf8'),
      ).version,
      node: process.version,
    };
    const rtcFlags = flags;

    const handle = async (msg) => {
      const { id, op, ...args2 } = msg;
      try {
        if (op === 'close') {
          send({ id, ok: true, result: null });
          await shutdown(0);
          return;
        }
        if (op === 'ping') return send({ id, ok: true, result: { pong: true } });
        if (op === 'versions') {
          return send({ id, ok: true, result: { ...versions, flags: rtcFlags, url: pageUrl } });
        }
        const reply = await page.evaluate(([o, a]) => window.lk.call(o, a), [op, args2]);
        send({ id, ...reply });
      } catch (e) {
        send({ id, ok: false, error: { name: 'DriverError', message: String(e?.message ?? e) } });
      }
    };

    const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
    rl.on('line', (line) => {
      if (!line.trim()) return;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch (e) {
        send({ id: null, ok: false, error: { name: 'BadRequest', message: String(e.message) } });
        return;
      }
      handle(msg);
    });
    rl.on('close', () => {
      log('stdin closed');
      shutdown(0);
    });

    send({ ready: true, url: pageUrl, user_data_dir: opts.userDataDir, versions, flags });
  } catch (e) {
    log('startup failed:', e?.stack ?? e);
    send({ fatal: `startup failed: ${e?.message ?? e}` });
    await shutdown(1);
  }
}

main();
