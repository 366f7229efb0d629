// `npm run test:browser` must not pass by skipping: fail when Chromium is missing.
import { existsSync } from 'node:fs';

const found = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].some(
  (path) => path && existsSync(path),
);
if (!found) {
  console.error('Chromium not found: apt-get install chromium (or set CHROMIUM_PATH).');
  process.exit(1);
}
