'use strict';
// authgate itself: the binary from AUTHGATE_BIN (default target/release/authgate
// of this repo), run as `authgate run --config <generated yaml>`.
const fs = require('node:fs');
const path = require('node:path');
const { start, tmpDir } = require('./procs');
const { freePorts } = require('./ports');
const { waitFor } = require('./wait');
const { request } = require('./http');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const AUTHGATE_BIN = path.resolve(REPO_ROOT, process.env.AUTHGATE_BIN || 'target/release/authgate');
// A fixed 32-byte cookie secret, base64url without padding.
const COOKIE_SECRET = Buffer.from('authgate-e2e-cookie-secret-32byt').toString('base64url');

/** Why authgate tests must be skipped, or false when the binary is there. */
function skipReason() {
  try {
    fs.accessSync(AUTHGATE_BIN, fs.constants.X_OK);
    return false;
  } catch {
    return `authgate binary not found at ${AUTHGATE_BIN} (build it with cargo build --release or set AUTHGATE_BIN)`;
  }
}

/** Picks the four listener ports up front (the IdP must know the redirect URIs). */
async function allocatePorts() {
  const [listen, metrics, extAuthzHttp, extAuthzGrpc] = await freePorts(4);
  return { listen, metrics, extAuthzHttp, extAuthzGrpc };
}

/** The config every test starts from; `overrides` are deep-merged on top. */
function baseConfig({ ports, idp, upstreamUrl }) {
  return {
    server: {
      listen: `127.0.0.1:${ports.listen}`,
      ext_authz_http: `127.0.0.1:${ports.extAuthzHttp}`,
      ext_authz_grpc: `127.0.0.1:${ports.extAuthzGrpc}`,
      metrics: `127.0.0.1:${ports.metrics}`,
      threads: 2,
    },
    provider: {
      issuer_url: idp.issuer,
      client_id: idp.clientId,
      client_secret: idp.clientSecret,
      scopes: ['openid', 'email', 'profile', 'groups'],
    },
    cookie: {
      name: '_oauth2_proxy',
      secret: COOKIE_SECRET,
      secure: false,
      expire: '1h',
    },
    session: { store: 'cookie' },
    authorization: {
      allowed_groups: ['admins'],
    },
    upstreams: [{ path: '/', url: upstreamUrl }],
  };
}

function isPlainObject(v) { return v && typeof v === 'object' && !Array.isArray(v); }

function merge(a, b) {
  const out = { ...a };
  for (const [k, v] of Object.entries(b || {})) {
    out[k] = isPlainObject(v) && isPlainObject(a[k]) ? merge(a[k], v) : v;
  }
  return out;
}

/** Block-style YAML with every scalar string double-quoted (JSON strings are YAML). */
function toYaml(value, indent = '') {
  const scalar = (v) => (typeof v === 'string' ? JSON.stringify(v) : String(v));
  if (Array.isArray(value)) {
    if (!value.length) return ' []';
    return value.map((item) => {
      if (isPlainObject(item)) {
        const body = toYaml(item, `${indent}  `).replace(/^\n\s*/, '');
        return `\n${indent}- ${body}`;
      }
      return `\n${indent}- ${scalar(item)}`;
    }).join('');
  }
  if (isPlainObject(value)) {
    return Object.entries(value).map(([k, v]) => {
      if (isPlainObject(v) || Array.isArray(v)) return `\n${indent}${k}:${toYaml(v, `${indent}  `)}`;
      return `\n${indent}${k}: ${scalar(v)}`;
    }).join('');
  }
  return ` ${scalar(value)}`;
}

/**
 * Writes the config and starts authgate; resolves when GET /ready answers 200.
 * @returns {Promise<{url, ports, config, yaml, configPath, proc, output(), stop()}>}
 */
async function startAuthgate({ ports, config, readyTimeoutMs = 20000, env = {} }) {
  const dir = tmpDir('authgate');
  const yaml = `${toYaml(config).replace(/^\n/, '')}\n`;
  const configPath = path.join(dir, 'authgate.yaml');
  fs.writeFileSync(configPath, yaml);
  const proc = start(AUTHGATE_BIN, ['run', '--config', configPath], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...env },
    logFile: path.join(dir, 'authgate.log'),
  });
  const url = `http://127.0.0.1:${ports.listen}`;
  const ag = {
    url,
    ports,
    config,
    yaml,
    configPath,
    proc,
    output: proc.output,
    metricsUrl: `http://127.0.0.1:${ports.metrics}/metrics`,
    extAuthzHttpUrl: `http://127.0.0.1:${ports.extAuthzHttp}`,
    extAuthzGrpcAddr: `127.0.0.1:${ports.extAuthzGrpc}`,
    stop: () => proc.stop('SIGTERM'),
  };
  try {
    await waitFor(async () => {
      if (!proc.isAlive()) throw new Error('authgate exited');
      return (await request(`${url}/ready`, { timeoutMs: 2000 })).status === 200;
    }, { timeoutMs: readyTimeoutMs, intervalMs: 100, what: 'authgate GET /ready to answer 200' });
  } catch (err) {
    await proc.stop('SIGKILL');
    throw new Error(`${err.message}\n--- config ---\n${yaml}--- authgate output ---\n${proc.output()}`);
  }
  return ag;
}

module.exports = {
  AUTHGATE_BIN, COOKIE_SECRET, skipReason, allocatePorts, baseConfig, merge, toYaml, startAuthgate,
};
