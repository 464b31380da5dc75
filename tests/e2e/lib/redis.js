'use strict';
// Debian's redis-server on a free port with its own dir, no persistence of its
// own; `stop({save: true})` writes a dump so a restart keeps the sessions
// (an outage, not a data loss).
const path = require('node:path');
const { execFile } = require('node:child_process');
const { start, tmpDir } = require('./procs');
const { freePort } = require('./ports');
const { waitFor } = require('./wait');

const SERVER = process.env.REDIS_SERVER_BIN || '/usr/bin/redis-server';
const CLI = process.env.REDIS_CLI_BIN || '/usr/bin/redis-cli';

function cli(port, args) {
  return new Promise((resolve, reject) => {
    execFile(CLI, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

async function startRedis() {
  const dir = tmpDir('redis');
  const port = await freePort();
  const r = {
    port, dir, url: `redis://127.0.0.1:${port}/0`, proc: null,
    async start() {
      this.proc = start(SERVER, [
        '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
        '--save', '', '--appendonly', 'no', '--dbfilename', 'dump.rdb', '--daemonize', 'no',
        '--protected-mode', 'no',
      ], { logFile: path.join(dir, `redis-${Date.now()}.log`) });
      const { proc } = this;
      await waitFor(async () => {
        if (!proc.isAlive()) throw new Error(`redis-server exited: ${proc.output()}`);
        return (await cli(port, ['PING'])) === 'PONG';
      }, { timeoutMs: 10000, what: 'redis-server to answer PING' });
    },
    /** Stops redis; with save, the data set is written and reloaded by the next start(). */
    async stop({ save = false } = {}) {
      if (!this.proc || !this.proc.isAlive()) return;
      if (save) {
        await cli(port, ['SHUTDOWN', 'SAVE']).catch(() => {});
        await waitFor(() => !this.proc.isAlive(), { timeoutMs: 10000, what: 'redis-server to exit' }).catch(() => {});
      }
      await this.proc.stop('SIGTERM');
    },
    cli: (...args) => cli(port, args),
    async keys() {
      const out = await cli(port, ['--scan']);
      return out ? out.split('\n').filter(Boolean) : [];
    },
  };
  await r.start();
  return r;
}

module.exports = { startRedis };
