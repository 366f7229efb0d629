/**
 * Bundle benchmark (`npm run bench`, or `node --import tsx bench/bundles.ts` alone): for
 * each function, side by side in one run,
 *  - ours: built exactly as the CDK construct builds it (`infra/bundle-options.ts`: ESM,
 *    minified, AWS SDK bundled and tree-shaken, source map);
 *  - (a) the same entry built the CDK default way (`NodejsFunction` defaults: CommonJS, not
 *    minified, `@aws-sdk/*` and `@smithy/*` external), the SDK then loaded from
 *    `node_modules` as the Lambda runtime would load its own copy;
 *  - (b) a bundle of only the SDK clients and commands the function uses (the floor that
 *    tree-shaking could reach if the entry imported nothing else).
 * Sizes are the `.mjs`/`.js` file, minified and gzip -6. Import time is measured inside a
 * fresh `node` process per sample (median of RUNS), with the function's configuration in
 * the environment, so it includes the module-scope work of a cold start (config, clients).
 * Peak RSS is `maxRSS` after one cold and one warm invocation with `events/<route>.json`,
 * every AWS endpoint and Salesforce pointed at a closed loopback port (fails fast, 503).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { type BuildOptions, build } from 'esbuild';
import { BROKER_BUNDLE } from '../infra/bundle-options.ts';
import { dummyFunctionEnv } from '../test/infra/function-env.ts';

const ROOT = join(import.meta.dirname, '..');
const ROUTES = ['refresh', 'login', 'callback', 'logout', 'session', 'token', 'service'] as const;
type Route = (typeof ROUTES)[number];
const RUNS = Number(process.env.BENCH_RUNS ?? 7);

/**
 * The AWS calls of each function (mirrors `FUNCTION_ACCESS` in `infra/token-broker.ts`,
 * which the template tests pin; kept here so the benchmark loads no CDK).
 */
/** The sample event each function is invoked with (`events/<name>.json`). */
const EVENT_OF: Partial<Record<Route, string>> = { service: 'service-token' };

const SDK_USE: Record<Route, Record<string, string[]>> = {
  service: {
    '@aws-sdk/client-dynamodb': [
      'DynamoDBClient',
      'GetItemCommand',
      'UpdateItemCommand',
      'DeleteItemCommand',
      'QueryCommand',
    ],
    '@aws-sdk/client-kms': ['KMSClient', 'GenerateDataKeyCommand', 'DecryptCommand'],
    '@aws-sdk/client-secrets-manager': ['SecretsManagerClient', 'GetSecretValueCommand'],
  },
  refresh: {
    '@aws-sdk/client-dynamodb': [
      'DynamoDBClient',
      'GetItemCommand',
      'UpdateItemCommand',
      'DeleteItemCommand',
    ],
    '@aws-sdk/client-kms': ['KMSClient', 'GenerateDataKeyCommand', 'DecryptCommand'],
    '@aws-sdk/client-secrets-manager': ['SecretsManagerClient', 'GetSecretValueCommand'],
  },
  login: {
    '@aws-sdk/client-dynamodb': ['DynamoDBClient', 'PutItemCommand'],
    '@aws-sdk/client-secrets-manager': ['SecretsManagerClient', 'GetSecretValueCommand'],
  },
  callback: {
    '@aws-sdk/client-dynamodb': [
      'DynamoDBClient',
      'GetItemCommand',
      'PutItemCommand',
      'DeleteItemCommand',
    ],
    '@aws-sdk/client-kms': ['KMSClient', 'GenerateDataKeyCommand', 'DecryptCommand'],
    '@aws-sdk/client-secrets-manager': ['SecretsManagerClient', 'GetSecretValueCommand'],
  },
  logout: {
    '@aws-sdk/client-dynamodb': ['DynamoDBClient', 'DeleteItemCommand'],
    '@aws-sdk/client-kms': ['KMSClient', 'DecryptCommand'],
  },
  session: {
    '@aws-sdk/client-dynamodb': ['DynamoDBClient', 'GetItemCommand'],
  },
  token: {
    '@aws-sdk/client-dynamodb': [
      'DynamoDBClient',
      'GetItemCommand',
      'UpdateItemCommand',
      'DeleteItemCommand',
    ],
    '@aws-sdk/client-kms': ['KMSClient', 'DecryptCommand'],
  },
};

interface Built {
  file: string;
  bytes: number;
  gzipBytes: number;
  format: 'esm' | 'cjs';
}

interface Measured {
  /** Median wall time of the import. */
  importMs: number;
  /** User + system CPU of the import (minimum): what a Lambda CPU share slows down. */
  importCpuMs: number;
}

interface Invoked {
  peakRssMb: number;
  /** CPU of the first and of the second (warm) invocation. */
  coldInvokeCpuMs: number;
  warmInvokeCpuMs: number;
}

export interface BundleResult {
  route: Route;
  ours: Built & Measured & Invoked;
  cdkDefault: Built & Measured & Invoked & { note: string };
  sdkOnly: Built & Measured;
}

/** Memory sizes considered, smallest first (1,769 MB is one full vCPU). */
const MEMORY_SIZES_MB = [128, 256, 512, 1024, 1769];
/** CPU time a cold start (import, then the first invocation) may take, projected to Lambda. */
const COLD_START_TARGET_MS = 800;

/**
 * The sizing rule behind `MEMORY_MB` in `infra/token-broker.ts`: the smallest size whose
 * projected cold-start CPU (import plus first invocation, scaled by 1,769 MB / size) stays
 * under COLD_START_TARGET_MS and whose peak RSS uses at most half the memory.
 */
export function suggestedMemoryMb(result: Pick<BundleResult, 'ours'>): number {
  const coldCpuMs = result.ours.importCpuMs + result.ours.coldInvokeCpuMs;
  const fits = (mb: number) =>
    projectedMs(coldCpuMs, mb) <= COLD_START_TARGET_MS && result.ours.peakRssMb <= mb / 2;
  return MEMORY_SIZES_MB.find(fits) ?? 1769;
}

function projectedMs(cpuMs: number, memoryMb: number): number {
  return cpuMs * Math.max(1, 1769 / memoryMb);
}

/** Builds and measures every function; returns the rows (used by the sizing notes too). */
export async function measureBundles(): Promise<BundleResult[]> {
  const work = mkdtempSync(join(tmpdir(), 'token-broker-bench-'));
  // Bundles that must stand alone live where no node_modules can be found; the CDK
  // default build gets a node_modules link, as the runtime provides its SDK copy.
  const alone = join(work, 'alone');
  const withModules = join(work, 'with-node-modules');
  mkdirSync(alone);
  mkdirSync(withModules);
  symlinkSync(join(ROOT, 'node_modules'), join(withModules, 'node_modules'), 'dir');
  try {
    const results: BundleResult[] = [];
    for (const route of ROUTES) {
      const entry = join(ROOT, 'functions', `${route}.ts`);
      const ours = await bundle(entry, join(alone, `${route}-ours`), ourOptions());
      const cdkDefault = await bundleCdkDefault(entry, join(withModules, `${route}-cdk-default`));
      const sdkOnly = await bundle(
        { contents: sdkOnlySource(SDK_USE[route]), resolveDir: ROOT, sourcefile: 'sdk-only.ts' },
        join(alone, `${route}-sdk-only`),
        ourOptions(),
      );
      const event = join(ROOT, 'events', `${EVENT_OF[route] ?? route}.json`);
      results.push({
        route,
        ours: { ...ours, ...measureImport(ours.file), ...invoke(ours.file, event) },
        cdkDefault: {
          ...cdkDefault,
          ...measureImport(cdkDefault.file),
          ...invoke(cdkDefault.file, event),
        },
        sdkOnly: { ...sdkOnly, ...measureImport(sdkOnly.file) },
      });
    }
    return results;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export async function benchBundles(): Promise<string> {
  const results = await measureBundles();
  const kb = (bytes: number) => `${(bytes / 1024).toFixed(0)} KB`;
  const ms = (value: number) => `${value.toFixed(0)} ms`;
  const header = [
    'function',
    'ours: min / gzip',
    'ours: import',
    '(a) CDK default: bundle / gzip (+ SDK from node_modules)',
    '(a): import',
    '(b) SDK clients only: min / gzip',
    '(b): import',
    'peak RSS ours / (a)',
  ];
  const rows = results.map((r) => [
    r.route,
    `${kb(r.ours.bytes)} / ${kb(r.ours.gzipBytes)}`,
    ms(r.ours.importMs),
    `${kb(r.cdkDefault.bytes)} / ${kb(r.cdkDefault.gzipBytes)}${r.cdkDefault.note}`,
    ms(r.cdkDefault.importMs),
    `${kb(r.sdkOnly.bytes)} / ${kb(r.sdkOnly.gzipBytes)}`,
    ms(r.sdkOnly.importMs),
    `${r.ours.peakRssMb.toFixed(0)} MB / ${r.cdkDefault.peakRssMb.toFixed(0)} MB`,
  ]);

  // Lambda gives a function CPU in proportion to its memory (1,769 MB = one vCPU), and
  // a cold start's import is CPU-bound: project the measured CPU time onto memory sizes.
  const sizes = [128, 256, 512, 1024];
  const sizingHeader = [
    'function',
    'import CPU (min)',
    'invoke CPU cold / warm (min)',
    ...sizes.map((mb) => `cold start at ${mb} MB`),
    'suggested memory',
  ];
  const sizingRows = results.map((r) => [
    r.route,
    ms(r.ours.importCpuMs),
    `${ms(r.ours.coldInvokeCpuMs)} / ${ms(r.ours.warmInvokeCpuMs)}`,
    ...sizes.map((mb) => ms(projectedMs(r.ours.importCpuMs + r.ours.coldInvokeCpuMs, mb))),
    `${suggestedMemoryMb(r)} MB`,
  ]);

  return [
    `Median of ${RUNS} fresh \`node\` processes per import time (${process.version}, ${process.arch}); ` +
      'import includes module-scope work (config, SDK clients) with `--enable-source-maps`.',
    '',
    table(header, rows),
    '',
    'Sizing (ours): cold-start CPU projected onto Lambda memory sizes (CPU share = memory / ' +
      `1,769 MB); suggested = smallest size with projected cold start (import + first ` +
      `invocation) <= ${COLD_START_TARGET_MS} ms CPU and ` +
      'peak RSS <= half the memory. Measured on this machine, so relative, not absolute.',
    '',
    table(sizingHeader, sizingRows),
  ].join('\n');
}

function ourOptions(): BuildOptions {
  return {
    format: BROKER_BUNDLE.format,
    target: BROKER_BUNDLE.target,
    minify: BROKER_BUNDLE.minify,
    sourcemap: BROKER_BUNDLE.sourcemap,
    sourcesContent: BROKER_BUNDLE.sourcesContent,
    mainFields: [...BROKER_BUNDLE.mainFields],
    banner: { js: BROKER_BUNDLE.banner },
    external: [...BROKER_BUNDLE.external],
  };
}

async function bundle(
  entry: string | { contents: string; resolveDir: string; sourcefile: string },
  dir: string,
  options: BuildOptions,
): Promise<Built> {
  const format = options.format === 'cjs' ? 'cjs' : 'esm';
  const file = join(dir, format === 'esm' ? 'index.mjs' : 'index.js');
  await build({
    ...options,
    ...(typeof entry === 'string'
      ? { entryPoints: [entry] }
      : { stdin: { ...entry, loader: 'ts' as const } }),
    outfile: file,
    bundle: true,
    platform: 'node',
    absWorkingDir: ROOT,
    logLevel: 'error',
  });
  const code = readFileSync(file);
  return { file, bytes: code.length, gzipBytes: gzipSync(code, { level: 6 }).length, format };
}

/** `NodejsFunction`'s defaults with the recommended `sdkV3ExcludeSmithyPackages` flag. */
async function bundleCdkDefault(entry: string, dir: string): Promise<Built & { note: string }> {
  const options: BuildOptions = {
    format: 'cjs',
    target: BROKER_BUNDLE.target,
    external: ['@aws-sdk/*', '@smithy/*'],
  };
  try {
    return { ...(await bundle(entry, dir, options)), note: '' };
  } catch {
    // Top-level await or `import.meta` cannot be CommonJS: keep the SDK external in ESM.
    return { ...(await bundle(entry, dir, { ...options, format: 'esm' })), note: ' (ESM)' };
  }
}

function sdkOnlySource(use: Record<string, string[]>): string {
  const lines: string[] = [];
  const used: string[] = [];
  for (const [module, names] of Object.entries(use)) {
    lines.push(`import { ${names.join(', ')} } from '${module}';`);
    const [client, ...commands] = names;
    used.push(`new ${client}({})`, ...commands);
  }
  lines.push(`export const used = [${used.join(', ')}];`);
  return `${lines.join('\n')}\n`;
}

function runNode(script: string, args: string[]): string {
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script, ...args], {
    env: { ...dummyFunctionEnv(9), NODE_OPTIONS: '--enable-source-maps' },
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`node exited ${run.status}: ${run.stderr}`);
  const last = run.stdout.trim().split('\n').pop() ?? '';
  return last;
}

const IMPORT_SCRIPT = `
const cpu = process.cpuUsage();
const start = performance.now();
await import(process.argv[1]);
const importMs = performance.now() - start;
const used = process.cpuUsage(cpu);
console.log(JSON.stringify({ importMs, importCpuMs: (used.user + used.system) / 1000 }));
`;

function measureImport(file: string): Measured {
  const samples: Measured[] = [];
  for (let run = 0; run < RUNS; run++) {
    samples.push(JSON.parse(runNode(IMPORT_SCRIPT, [pathToFileURL(file).href])) as Measured);
  }
  return {
    importMs: median(samples.map((s) => s.importMs)),
    // The least disturbed sample: other processes on a shared machine only ever add CPU.
    importCpuMs: Math.min(...samples.map((s) => s.importCpuMs)),
  };
}

const INVOKE_SCRIPT = `
import { readFileSync } from 'node:fs';
const { handler } = await import(process.argv[1]);
const event = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const context = { awsRequestId: 'bench', functionName: 'bench', getRemainingTimeInMillis: () => 12000 };
const timed = async () => {
  const cpu = process.cpuUsage();
  const response = await handler(structuredClone(event), context);
  const used = process.cpuUsage(cpu);
  return { status: response.statusCode, cpuMs: (used.user + used.system) / 1000 };
};
const cold = await timed();
const warm = await timed();
console.log(JSON.stringify({ cold, warm, maxRssKb: process.resourceUsage().maxRSS }));
`;

/** Three fresh processes: the least disturbed CPU sample, the largest peak RSS. */
function invoke(file: string, event: string): Invoked {
  const samples = [1, 2, 3].map(
    () =>
      JSON.parse(runNode(INVOKE_SCRIPT, [pathToFileURL(file).href, event])) as {
        cold: { cpuMs: number };
        warm: { cpuMs: number };
        maxRssKb: number;
      },
  );
  return {
    peakRssMb: Math.max(...samples.map((s) => s.maxRssKb)) / 1024,
    coldInvokeCpuMs: Math.min(...samples.map((s) => s.cold.cpuMs)),
    warmInvokeCpuMs: Math.min(...samples.map((s) => s.warm.cpuMs)),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] ?? 0)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

function table(header: string[], rows: string[][]): string {
  const lines = [header, header.map(() => '---'), ...rows];
  return lines.map((line) => `| ${line.join(' | ')} |`).join('\n');
}

if (import.meta.main) {
  console.log(await benchBundles());
}
