/**
 * Builds the client package into `client/dist`: one ESM file per entry (`index.js`,
 * `iam.js`; esbuild) and their type declarations (tsc). Run by `npm run build:client`
 * and by the test suites' global setup, so the tests use what `npm pack` ships.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type BuildOptions, build } from 'esbuild';

const CLIENT_DIR = fileURLToPath(new URL('..', import.meta.url));

/** The options of the shipped `index.js`, also used to measure the minified browser bundle. */
export const INDEX_BUILD: BuildOptions = {
  entryPoints: [`${CLIENT_DIR}src/index.ts`],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  // The lazily loaded IAM module is the package's own `iam.js`, next to this file.
  define: { __IAM_MODULE__: '"./iam.js"' },
  legalComments: 'none',
};

export async function buildClient(): Promise<void> {
  rmSync(`${CLIENT_DIR}dist`, { recursive: true, force: true });
  await build({ ...INDEX_BUILD, outfile: `${CLIENT_DIR}dist/index.js`, logLevel: 'warning' });
  await build({
    entryPoints: [`${CLIENT_DIR}src/iam.ts`],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Optional peer dependencies: resolved from the user's node_modules.
    external: ['@smithy/*', '@aws-sdk/*'],
    plugins: [
      {
        // The errors are index.js's own classes, not a second copy (`instanceof` holds).
        name: 'errors-from-index',
        setup(iamBuild) {
          iamBuild.onResolve({ filter: /^\.\/errors\.js$/ }, () => ({
            path: './index.js',
            external: true,
          }));
        },
      },
    ],
    outfile: `${CLIENT_DIR}dist/iam.js`,
    logLevel: 'warning',
  });
  const tsc = fileURLToPath(new URL('../../node_modules/typescript/bin/tsc', import.meta.url));
  const types = spawnSync(process.execPath, [tsc, '-p', `${CLIENT_DIR}tsconfig.json`], {
    encoding: 'utf8',
  });
  if (types.status !== 0) throw new Error(`tsc (client declarations) failed:\n${types.stdout}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await buildClient();
}
