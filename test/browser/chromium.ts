import { existsSync } from 'node:fs';

/** Debian's Chromium (package `chromium`), or CHROMIUM_PATH; undefined when absent. */
export function findChromium(): string | undefined {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  return candidates.find((path): path is string => Boolean(path && existsSync(path)));
}

/**
 * Flags for a headless Chromium on a machine without a network: no sandbox (root in CI),
 * and no background networking, which would otherwise try to reach Google's hosts.
 */
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];
