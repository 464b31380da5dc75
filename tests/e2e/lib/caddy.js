'use strict';
// Debian's Caddy (apt-get install caddy), run with a Caddyfile the test
// writes: no admin endpoint, no automatic HTTPS, its state in a temp dir.
const fs = require('node:fs');
const path = require('node:path');
const { start, tmpDir } = require('./procs');
const { freePort } = require('./ports');
const { waitFor } = require('./wait');
const { request } = require('./http');

const CADDY = process.env.CADDY_BIN || '/usr/bin/caddy';

/** Why Caddy tests must be skipped, or false when the binary is there. */
function caddySkipReason() {
  try {
    fs.accessSync(CADDY, fs.constants.X_OK);
    return false;
  } catch {
    return `caddy not found at ${CADDY} (apt-get install caddy, or set CADDY_BIN)`;
  }
}

/**
 * Starts Caddy on a free 127.0.0.1 port with the site block `site(port)`
 * returns (its address is `http://127.0.0.1:PORT`); resolves once the site
 * answers `GET /__caddy_ready` (a `handle` of its own, more specific than the site's
 * catch-all `handle`).
 * @returns {Promise<{url, port, dir, proc, caddyfile, stop()}>}
 */
async function startCaddy(site) {
  const dir = tmpDir('caddy');
  const port = await freePort();
  const caddyfile = `{
  admin off
  auto_https off
  storage file_system ${dir}/data
}

http://127.0.0.1:${port} {
  log {
    output file ${dir}/access.log
  }
  handle /__caddy_ready {
    respond "ready" 200
  }
${site(port).replace(/^/gm, '  ')}
}
`;
  const file = path.join(dir, 'Caddyfile');
  fs.writeFileSync(file, caddyfile);
  // Caddy keeps state under $HOME/XDG dirs: point them at the temp dir.
  const env = {
    ...process.env, HOME: dir, XDG_DATA_HOME: `${dir}/data`, XDG_CONFIG_HOME: `${dir}/config`,
  };
  const proc = start(CADDY, ['run', '--adapter', 'caddyfile', '--config', file], {
    env, logFile: path.join(dir, 'caddy.log'),
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => {
      if (!proc.isAlive()) throw new Error(`caddy exited: ${proc.output()}`);
      return (await request(`${url}/__caddy_ready`, { timeoutMs: 2000 })).status === 200;
    }, { timeoutMs: 15000, what: 'caddy to answer' });
  } catch (err) {
    await proc.stop('SIGKILL');
    throw new Error(`${err.message}\n--- Caddyfile ---\n${caddyfile}`);
  }
  return { url, port, dir, proc, caddyfile, stop: () => proc.stop('SIGTERM') };
}

module.exports = { startCaddy, caddySkipReason, CADDY };
