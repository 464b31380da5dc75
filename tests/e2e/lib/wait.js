'use strict';
// Polling with a deadline: the suite never sleeps a fixed time and hopes.

const tick = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Calls `fn` until it returns a truthy value (returned) or the deadline passes
 * (throws with `what` and the last error or value seen).
 */
async function waitFor(fn, { timeoutMs = 10000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${detail})`);
    }
    await tick(intervalMs);
  }
}

/** Waits until the wall clock has passed `epochMs` (for token lifetimes), polling. */
async function waitUntilTime(epochMs, what = 'time') {
  return waitFor(() => Date.now() >= epochMs, {
    timeoutMs: Math.max(0, epochMs - Date.now()) + 2000, intervalMs: 50, what,
  });
}

module.exports = { waitFor, waitUntilTime };
