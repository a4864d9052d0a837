// Cleanup for scripts that build labs (bench, flood, soak): at exit, on SIGINT/SIGTERM/SIGHUP and after an uncaught error.
import { labsUp } from './lab.js';
import { detachChildren, stopAll, tracked } from './process.js';

const hooks: (() => void)[] = [];
let graceMs = 30_000;
let cleaned = false;

/** Runs `fn` at cleanup, after the labs are down (e.g. to remove temporary files their servers used). */
export function onCleanup(fn: () => void): void {
  hooks.push(fn);
}

/**
 * Synchronous, so that it also runs from signal handlers and at exit: every lab still up goes
 * down (its vipnat runs first, with SIGTERM and `graceMs` to remove their sessions), then the
 * children started outside labs, then the hooks. Best effort: one failure does not stop the rest.
 */
export function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  for (const lab of [...labsUp]) {
    try {
      lab.down(graceMs);
    } catch (e) {
      process.stderr.write(`cleanup: lab ${lab.name}: ${(e as Error).message}\n`);
    }
  }
  stopAll(tracked, new Set(), 0);
  for (const fn of hooks) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
}

/**
 * Makes this process a driver: children start in their own process groups (a terminal's ^C
 * reaches only the driver), and cleanup() runs at exit and on SIGINT, SIGTERM and SIGHUP
 * (then the process exits 128 + the signal's number). `vipnatGraceMs`: how long a vipnat run
 * gets to stop at cleanup (1000 sessions take about 30 s).
 */
export function asDriver(name: string, vipnatGraceMs = 30_000): void {
  graceMs = vipnatGraceMs;
  detachChildren();
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n${name}: ${sig}: stopping and cleaning up\n`);
      cleanup();
      process.exit(code);
    });
  }
  process.on('exit', cleanup);
}
