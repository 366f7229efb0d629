/**
 * How every broker function is bundled, in one place: the CDK construct (through
 * `NodejsFunction`) and `bench/bundles.ts` (through esbuild's API) both read it, so the
 * benchmark measures exactly what `cdk deploy` ships. No CDK import here on purpose.
 */

/**
 * ESM output has no `require`; CommonJS dependencies that `require` Node built-ins need
 * one. The alias avoids clashing with a top-level `createRequire` inside the bundle.
 */
export const ESM_REQUIRE_BANNER =
  "import{createRequire as __brokerCreateRequire}from'node:module';const require=__brokerCreateRequire(import.meta.url);";

export const BROKER_BUNDLE = {
  /** Matches the `nodejs24.x` runtime. */
  target: 'node24',
  format: 'esm',
  minify: true,
  /** External `.map` beside the bundle; `NODE_OPTIONS=--enable-source-maps` uses it. */
  sourcemap: true,
  /** File and line are enough in stack traces; leaving sources out halves the map. */
  sourcesContent: false,
  /** `module` first: the AWS SDK's ES builds tree-shake, its CommonJS builds do not. */
  mainFields: ['module', 'main'],
  banner: ESM_REQUIRE_BANNER,
  /**
   * Nothing is external: the AWS SDK is bundled and tree-shaken instead of taken from the
   * runtime, so the deployed code runs the SDK version we tested, and cold starts load one
   * file instead of resolving hundreds of modules (see `npm run bench`).
   */
  external: [] as string[],
} as const;
