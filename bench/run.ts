/** `npm run bench`: every benchmark, side by side in one run, printed as Markdown tables. */
import { benchBundles } from './bundles.ts';
import { benchClientBundle } from './client-bundle.ts';
import { benchRefresh } from './refresh.ts';
import { benchSweep } from './sweep.ts';

const sections: Array<[string, () => Promise<string>]> = [
  ['Refresh path', benchRefresh],
  ['Sweep (keep-alive and expiry)', benchSweep],
  ['Bundles and cold start', benchBundles],
  ['Client bundle', benchClientBundle],
];

console.log(`# Benchmarks (node ${process.version}, ${new Date().toISOString()})\n`);
for (const [title, run] of sections) {
  console.log(`## ${title}\n`);
  console.log(await run());
  console.log('');
}
