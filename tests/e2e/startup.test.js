'use strict';
// Issue 9, fault 2: the first browser requests after start-up. authgate is
// started before its IdP answers; as soon as /ping answers (and, for `run`,
// the IdP is up a moment later) Chromium opens a protected page and must land
// on the IdP's login page, never on a 503.
const fs = require('node:fs');
const path = require('node:path');
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { startIdp, CLIENT_ID, CLIENT_SECRET } = require('./lib/idp');
const { startNginx } = require('./lib/nginx');
const { launchBrowser, newContext } = require('./lib/browser');
const { request } = require('./lib/http');
const { freePort } = require('./lib/ports');
const { start, tmpDir } = require('./lib/procs');
const { waitFor } = require('./lib/wait');
const {
  AUTHGATE_BIN, skipReason, allocatePorts, baseConfig, toYaml,
} = require('./lib/authgate');
const { stopAll, parseMetrics, gate } = require('./lib/common');

const { it, before, after } = gate(skipReason());

/** Starts the binary with `args` and resolves once GET /ping answers 200 (not /ready). */
async function startUntilPing(args, listenPort) {
  const dir = tmpDir('authgate-startup');
  const proc = start(AUTHGATE_BIN, args(dir), {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
    logFile: path.join(dir, 'authgate.log'),
  });
  const url = `http://127.0.0.1:${listenPort}`;
  try {
    await waitFor(async () => {
      if (!proc.isAlive()) throw new Error('authgate exited');
      return (await request(`${url}/ping`, { timeoutMs: 1000 })).status === 200;
    }, { timeoutMs: 20000, intervalMs: 10, what: 'authgate GET /ping to answer 200' });
  } catch (err) {
    await proc.stop('SIGKILL');
    throw new Error(`${err.message}\n--- authgate output ---\n${proc.output()}`);
  }
  return { url, proc, stop: () => proc.stop('SIGTERM') };
}

describe('the first browser requests after start-up (issue 9, fault 2)', () => {
  let nginx;
  let browser;
  let idp;
  const running = [];

  before(async () => {
    nginx = await startNginx();
    browser = await launchBrowser();
  });

  after(async () => {
    await stopAll(
      () => browser?.close(),
      ...running.map((p) => () => p.stop()),
      () => idp?.stop(),
      () => nginx?.stop(),
    );
  });

  it('`run` whose IdP comes up a moment later: the first navigation lands on the IdP login page', async () => {
    const ports = await allocatePorts();
    const idpPort = await freePort();
    const issuer = `http://127.0.0.1:${idpPort}`;
    const config = baseConfig({
      ports,
      idp: { issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET },
      upstreamUrl: nginx.url,
    });
    const ag = await startUntilPing((dir) => {
      const configPath = path.join(dir, 'authgate.yaml');
      fs.writeFileSync(configPath, `${toYaml(config).replace(/^\n/, '')}\n`);
      return ['run', '--config', configPath];
    }, ports.listen);
    running.push(ag);
    // authgate has looked for the IdP and not found it.
    await waitFor(async () => {
      const text = (await request(`http://127.0.0.1:${ports.metrics}/metrics`)).body.toString();
      return parseMetrics(text).some((m) => m.name === 'authgate_idp_requests_total'
        && m.labels.endpoint === 'discovery' && m.labels.outcome === 'error' && m.value >= 1);
    }, { timeoutMs: 10000, intervalMs: 10, what: 'a failed discovery probe' });

    idp = await startIdp({ port: idpPort, redirectUris: [`${ag.url}/oauth2/callback`] });
    const page = await (await newContext(browser)).newPage();
    const resp = await page.goto(`${ag.url}/first/page?x=1`);
    assert.ok(
      page.url().startsWith(`${issuer}/interaction/`),
      `expected the IdP login page, got ${resp.status()} at ${page.url()}\n${ag.proc.output()}`,
    );
    await page.waitForSelector('input[name=username]');
  });

  it('`authgate demo`: navigating as soon as /ping answers lands on the demo IdP login page', async () => {
    const port = await freePort();
    const demo = await startUntilPing(() => ['demo', '--port', String(port)], port);
    running.push(demo);
    const page = await (await newContext(browser)).newPage();
    const resp = await page.goto(`${demo.url}/`);
    assert.equal(resp.status(), 200, `${page.url()}\n${demo.proc.output()}`);
    assert.notEqual(new URL(page.url()).port, String(port), `still on authgate: ${page.url()}`);
    await page.waitForSelector('input[name=username]');
    await page.waitForSelector('input[name=password]');
  });
});
