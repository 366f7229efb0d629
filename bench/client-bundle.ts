/**
 * Client bundle size (`npm run bench`, or `node --import tsx bench/client-bundle.ts` alone):
 * what a browser app adds when it imports the client, built with the package's own options
 * (`client/scripts/build.ts`), minified as an app's bundler would, and gzip -6. The goal is
 * under 3 KB gzip. The IAM module is listed apart: browsers never load it.
 */
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { INDEX_BUILD } from '../client/scripts/build.ts';

const GOAL_GZIP_BYTES = 3 * 1024;

async function sizes(
  entry: string,
  extra: Parameters<typeof build>[0] = {},
): Promise<{ raw: number; min: number; gzip: number }> {
  const output = async (minify: boolean) => {
    const result = await build({
      ...INDEX_BUILD,
      ...extra,
      entryPoints: [entry],
      minify,
      write: false,
      logLevel: 'silent',
    });
    return result.outputFiles?.[0]?.contents ?? new Uint8Array();
  };
  const [raw, min] = await Promise.all([output(false), output(true)]);
  return { raw: raw.length, min: min.length, gzip: gzipSync(min, { level: 6 }).length };
}

export async function benchClientBundle(): Promise<string> {
  const index = await sizes(String((INDEX_BUILD.entryPoints as string[])[0]));
  const iam = await sizes(new URL('../client/src/iam.ts', import.meta.url).pathname, {
    platform: 'node',
    external: ['@smithy/*', '@aws-sdk/*'],
  });
  const kb = (bytes: number) => `${(bytes / 1024).toFixed(2)} KB`;
  return [
    '| client module | as shipped | minified | minified + gzip | goal |',
    '|---|---|---|---|---|',
    `| \`index.js\` (browsers, apps, jobs) | ${kb(index.raw)} | ${kb(index.min)} | ${kb(index.gzip)} | < 3 KB gzip: ${index.gzip < GOAL_GZIP_BYTES ? 'met' : 'MISSED'} |`,
    `| \`iam.js\` (Node, loaded for \`{ iam }\` only; AWS packages not counted) | ${kb(iam.raw)} | ${kb(iam.min)} | ${kb(iam.gzip)} | - |`,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await benchClientBundle());
}
