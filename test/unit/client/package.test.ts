import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLIENT_DIR = fileURLToPath(new URL('../../../client/', import.meta.url));

interface PackResult {
  name: string;
  files: Array<{ path: string }>;
}

/**
 * The package as `npm pack` ships it (client/dist is built by the tests' global setup;
 * `--ignore-scripts` so the prepack build does not run again under the other suites).
 */
describe('Client: the npm package', () => {
  it('packs the built entry points, their types, the manifest and the README only', () => {
    // Act
    const output = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: CLIENT_DIR,
      encoding: 'utf8',
    });

    // Assert
    const [packed] = JSON.parse(output) as PackResult[];
    expect(packed?.name).toBe('@salesforce-token-broker/client');
    expect(packed?.files.map((file) => file.path).sort()).toEqual([
      'README.md',
      'dist/client.d.ts',
      'dist/errors.d.ts',
      'dist/iam.d.ts',
      'dist/iam.js',
      'dist/index.d.ts',
      'dist/index.js',
      'dist/jsforce.d.ts',
      'dist/tabs.d.ts',
      'package.json',
    ]);
  });

  it('points every export at a packed file, and has no runtime dependencies', () => {
    // Prepare
    const manifest = JSON.parse(readFileSync(`${CLIENT_DIR}package.json`, 'utf8')) as {
      type: string;
      exports: Record<string, string | { types: string; default: string }>;
      dependencies?: Record<string, string>;
      peerDependenciesMeta: Record<string, { optional: boolean }>;
    };

    // Act
    const targets = Object.values(manifest.exports).flatMap((target) =>
      typeof target === 'string' ? [target] : [target.types, target.default],
    );

    // Assert
    expect(manifest.type).toBe('module');
    for (const target of targets) {
      expect(() => readFileSync(new URL(target, `file://${CLIENT_DIR}`)), target).not.toThrow();
    }
    expect(manifest.dependencies).toBeUndefined();
    expect(Object.values(manifest.peerDependenciesMeta).every((meta) => meta.optional)).toBe(true);
  });

  it('ships an index.js that imports nothing: what a browser loads is this one file', () => {
    // Prepare
    const index = readFileSync(`${CLIENT_DIR}dist/index.js`, 'utf8');
    const iam = readFileSync(`${CLIENT_DIR}dist/iam.js`, 'utf8');

    // Act
    const staticImports = index.match(/^\s*(import|export)\s[^;]*\sfrom\s/gm) ?? [];
    const dynamicImports = index.match(/\bimport\s*\(/g) ?? [];

    // Assert: only the lazy import of iam.js, which alone names the AWS packages
    expect(staticImports).toEqual([]);
    expect(dynamicImports).toHaveLength(1);
    expect(index).not.toMatch(/(from|import\()\s*["'`]@(smithy|aws-sdk)\//);
    expect(iam).toMatch(/from "@smithy\/signature-v4"/);
  });
});
