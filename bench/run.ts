/** `npm run bench`: every benchmark, side by side in one run, printed as Markdown tables. */
import { benchRefresh } from './refresh.ts';

const sections: Array<[string, () => Promise<string>]> = [['Refresh path', benchRefresh]];

try {
  // Resolved at run time: the bundle benchmark builds every function first.
  const specifier = './bundles.ts';
  const { benchBundles } = (await import(specifier)) as { benchBundles: () => Promise<string> };
  sections.push(['Bundles and cold start', benchBundles]);
} catch (error) {
  console.error(`bundle benchmark unavailable: ${(error as Error).message}`);
}

console.log(`# Benchmarks (node ${process.version}, ${new Date().toISOString()})\n`);
for (const [title, run] of sections) {
  console.log(`## ${title}\n`);
  console.log(await run());
  console.log('');
}
