'use strict';
// A plain HTTP/1.1 client (node:http) that lets tests set any header, Host
// included, never follows redirects by itself, and keeps every Set-Cookie line.
// Plus a small browser-like cookie jar (host-only, path-prefix, expiry).
const http = require('node:http');

/**
 * @param {string} url absolute http URL (where to connect)
 * @param {{method?: string, headers?: object|Array<[string,string]>, body?: string|Buffer, timeoutMs?: number}} opts
 *   headers as an object or a list of [name, value] pairs (to send duplicates / exact case)
 * @returns {Promise<{status:number, headers:object, setCookies:string[], rawHeaders:string[], body:string}>}
 */
function request(url, { method = 'GET', headers = {}, body, timeoutMs = 15000 } = {}) {
  const u = new URL(url);
  const list = Array.isArray(headers) ? headers : Object.entries(headers);
  const flat = [];
  let hasHost = false;
  for (const [k, v] of list) {
    if (v === undefined || v === null) continue;
    if (k.toLowerCase() === 'host') hasHost = true;
    flat.push(k, String(v));
  }
  if (!hasHost) flat.push('Host', u.host);
  if (body !== undefined) flat.push('Content-Length', String(Buffer.byteLength(body)));
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname,
      port: u.port || 80,
      method,
      path: u.pathname + u.search,
      headers: flat,
      setHost: false,
      agent: false,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const sc = res.headers['set-cookie'] || [];
        resolve({
          status: res.statusCode,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          setCookies: Array.isArray(sc) ? sc : [sc],
          body: Buffer.concat(chunks).toString('utf8'),
        });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Parses one Set-Cookie line. */
function parseSetCookie(line) {
  const parts = line.split(';');
  const first = parts.shift();
  const eq = first.indexOf('=');
  const c = { name: first.slice(0, eq).trim(), value: first.slice(eq + 1).trim(), path: '/', expires: null, attrs: {} };
  for (const p of parts) {
    const i = p.indexOf('=');
    const k = (i < 0 ? p : p.slice(0, i)).trim().toLowerCase();
    const v = i < 0 ? '' : p.slice(i + 1).trim();
    c.attrs[k] = v;
    if (k === 'path' && v.startsWith('/')) c.path = v;
    if (k === 'max-age') c.expires = Date.now() + Number(v) * 1000;
    if (k === 'expires' && c.expires === null) c.expires = Date.parse(v);
  }
  return c;
}

/** Cookies keyed like a browser: host (port ignored), path, name. */
class CookieJar {
  constructor() { this.cookies = new Map(); }

  /** Stores the Set-Cookie lines of a response for `url`. */
  store(url, setCookies) {
    const host = new URL(url).hostname;
    for (const line of setCookies || []) {
      const c = parseSetCookie(line);
      const key = `${host};${c.path};${c.name}`;
      if (c.expires !== null && c.expires <= Date.now()) this.cookies.delete(key);
      else this.cookies.set(key, { ...c, host });
    }
  }

  /** @returns {string|undefined} the Cookie header a browser would send to `url`. */
  header(url) {
    const u = new URL(url);
    const now = Date.now();
    const out = [];
    for (const c of this.cookies.values()) {
      if (c.host !== u.hostname) continue;
      if (c.expires !== null && c.expires <= now) continue;
      const p = c.path.endsWith('/') ? c.path : `${c.path}/`;
      if (!(u.pathname === c.path || u.pathname.startsWith(p))) continue;
      out.push(`${c.name}=${c.value}`);
    }
    return out.length ? out.join('; ') : undefined;
  }

  /** @returns {Array<{name, value, path, host}>} cookies currently held. */
  list() { return [...this.cookies.values()]; }

  get(name) { return this.list().find((c) => c.name === name); }

  clear() { this.cookies.clear(); }
}

/** A request that sends the jar's cookies and stores the response's. */
async function jarRequest(jar, url, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  const cookie = jar.header(url);
  if (cookie && !Object.keys(headers).some((k) => k.toLowerCase() === 'cookie')) headers.Cookie = cookie;
  const res = await request(url, { ...opts, headers });
  jar.store(url, res.setCookies);
  return res;
}

module.exports = { request, CookieJar, jarRequest, parseSetCookie };
