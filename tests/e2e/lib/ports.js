'use strict';
// Free loopback ports: bind port 0, read the port the kernel chose, release it.
const net = require('node:net');

/** @returns {Promise<number>} a TCP port free on 127.0.0.1 right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** @returns {Promise<number[]>} n distinct free ports. */
async function freePorts(n) {
  const out = new Set();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

module.exports = { freePort, freePorts };
