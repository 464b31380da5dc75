'use strict';
// Child-process bookkeeping: every process the suite starts is registered here
// so it is killed even when a test throws, a hook fails or the runner exits.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const live = new Set();
const tmpDirs = new Set();

function killAll() {
  for (const child of live) {
    try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  live.clear();
  if (!process.env.E2E_KEEP_TMP) {
    for (const d of tmpDirs) {
      try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { killAll(); process.exit(130); });
}

/** A fresh, unique temp dir removed at exit (kept when E2E_KEEP_TMP is set). */
function tmpDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `authgate-e2e-${prefix}-`));
  tmpDirs.add(d);
  return d;
}

/**
 * Spawns a process whose stdout/stderr are captured in memory and in files.
 * @returns {{child, output: () => string, exited: Promise<{code, signal}>, stop: (sig?) => Promise<void>}}
 */
function start(cmd, args, { cwd, env, logFile } = {}) {
  const child = spawn(cmd, args, { cwd, env: env || process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  const log = logFile ? fs.createWriteStream(logFile) : null;
  const onData = (buf) => {
    out += buf.toString();
    if (out.length > 1 << 20) out = out.slice(-(1 << 19));
    if (log) log.write(buf);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => { live.delete(child); resolve({ code, signal }); });
    child.on('error', (err) => { live.delete(child); out += `\nspawn error: ${err.message}`; resolve({ code: -1, signal: null }); });
  });
  let stopped = false;
  async function stop(sig = 'SIGTERM', graceMs = 5000) {
    if (stopped) return exited;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, sig); } catch { /* gone */ }
      const timer = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
      await exited;
      clearTimeout(timer);
    }
    if (log) log.end();
    return exited;
  }
  return { child, output: () => out, exited, stop, isAlive: () => child.exitCode === null && child.signalCode === null };
}

module.exports = { start, tmpDir, killAll };
