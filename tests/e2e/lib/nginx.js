'use strict';
// The upstream: Debian's nginx with the echo module, answering every request
// with the request line and headers it received (like the k8s echoserver).
const fs = require('node:fs');
const path = require('node:path');
const { start, tmpDir } = require('./procs');
const { freePort } = require('./ports');
const { waitFor } = require('./wait');
const { request } = require('./http');

const NGINX = process.env.NGINX_BIN || '/usr/sbin/nginx';
const MODULE_DIRS = ['/usr/lib/nginx/modules', '/usr/share/nginx/modules'];

function findModule(file) {
  for (const d of MODULE_DIRS) {
    const p = path.join(d, file);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`nginx module ${file} not found in ${MODULE_DIRS.join(', ')} (apt-get install libnginx-mod-http-echo)`);
}

/** Starts nginx on a free 127.0.0.1 port; resolves once it answers. */
async function startNginx() {
  const dir = tmpDir('nginx');
  const port = await freePort();
  for (const d of ['logs', 'tmp/body', 'tmp/proxy', 'tmp/fastcgi', 'tmp/uwsgi', 'tmp/scgi']) {
    fs.mkdirSync(path.join(dir, d), { recursive: true });
  }
  const conf = `
load_module ${findModule('ngx_http_echo_module.so')};
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log ${dir}/logs/access.log;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  # Show headers with '_' too: a smuggled X_Forwarded_Email must be visible if forwarded.
  underscores_in_headers on;
  ignore_invalid_headers off;
  large_client_header_buffers 8 64k;
  server {
    listen 127.0.0.1:${port};
    server_name _;
    location / {
      default_type text/plain;
      add_header Cache-Control no-store;
      echo "upstream: echo";
      echo -n $echo_client_request_headers;
    }
  }
}
`;
  const confPath = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confPath, conf);
  const proc = start(NGINX, ['-p', dir, '-e', path.join(dir, 'logs', 'error.log'), '-c', confPath], { logFile: path.join(dir, 'stdout.log') });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => {
      if (!proc.isAlive()) throw new Error(`nginx exited: ${proc.output()} ${readLog(dir)}`);
      return (await request(`${url}/__ready`)).status === 200;
    }, { timeoutMs: 10000, what: 'nginx to answer' });
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
  return { url, port, dir, proc, stop: () => proc.stop('SIGTERM') };
}

function readLog(dir) {
  try { return fs.readFileSync(path.join(dir, 'logs', 'error.log'), 'utf8'); } catch { return ''; }
}

/**
 * Parses the echo body: request line, then `Name: value` lines.
 * @returns {{requestLine: string, headers: Array<[string,string]>, get(name): string[], has(name): boolean}}
 */
function parseEcho(text) {
  const lines = text.replace(/\r/g, '').split('\n');
  if (lines[0] !== 'upstream: echo') throw new Error(`not an upstream echo page: ${text.slice(0, 200)}`);
  const requestLine = lines[1] || '';
  const headers = [];
  for (const line of lines.slice(2)) {
    const i = line.indexOf(':');
    if (i > 0) headers.push([line.slice(0, i).trim(), line.slice(i + 1).trim()]);
  }
  return {
    requestLine,
    headers,
    get(name) { return headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, v]) => v); },
    has(name) { return this.get(name).length > 0; },
    text,
  };
}

/**
 * Starts nginx on a free 127.0.0.1 port with the test's own `server { }`
 * body (`body(port)` returns it: e.g. an `auth_request` front, as in
 * forward_auth.test.js); resolves once `GET /__nginx_ready` (answered before
 * the body's locations) answers.
 * @returns {Promise<{url, port, dir, proc, conf, stop()}>}
 */
async function startNginxServer(body) {
  const dir = tmpDir('nginx-front');
  const port = await freePort();
  for (const d of ['logs', 'tmp/body', 'tmp/proxy', 'tmp/fastcgi', 'tmp/uwsgi', 'tmp/scgi']) {
    fs.mkdirSync(path.join(dir, d), { recursive: true });
  }
  const conf = `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log ${dir}/logs/access.log;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  server {
    listen 127.0.0.1:${port};
    server_name _;
    location = /__nginx_ready { return 200 "ready"; }
${body(port)}
  }
}
`;
  const confPath = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confPath, conf);
  const proc = start(NGINX, ['-p', dir, '-e', path.join(dir, 'logs', 'error.log'), '-c', confPath], { logFile: path.join(dir, 'stdout.log') });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => {
      if (!proc.isAlive()) throw new Error(`nginx exited: ${proc.output()} ${readLog(dir)}`);
      return (await request(`${url}/__nginx_ready`)).status === 200;
    }, { timeoutMs: 10000, what: 'nginx to answer' });
  } catch (err) {
    await proc.stop('SIGKILL');
    throw new Error(`${err.message}\n--- nginx.conf ---\n${conf}`);
  }
  return { url, port, dir, proc, conf, stop: () => proc.stop('SIGTERM') };
}

module.exports = { startNginx, startNginxServer, parseEcho };
