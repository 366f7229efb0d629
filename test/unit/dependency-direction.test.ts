/**
 * Dependencies point one way: the domain (`functions/broker/`) depends on its ports only,
 * never on the adapters that implement them (`functions/salesforce/`, `functions/aws/`) or
 * on the AWS SDK; the shared leaf modules (`functions/shared/`) depend on nothing but each other.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const repoRoot = resolve(import.meta.dirname, '../..');

interface Import {
  /** Repo-relative path of the importing file. */
  from: string;
  /** Repo-relative path for a relative specifier, else the bare specifier. */
  target: string;
}

/** Every `import`, `export ... from` and `import(...)` of `text`, resolved. */
function importsOf(file: string, text: string): Import[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const from = relative(repoRoot, file);
  const found: Import[] = [];
  const add = (specifier: ts.Expression | undefined) => {
    if (!specifier || !ts.isStringLiteralLike(specifier)) return;
    const name = specifier.text;
    const target = name.startsWith('.') ? relative(repoRoot, resolve(dirname(file), name)) : name;
    found.push({ from, target });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments.length > 0
    ) {
      add(node.arguments[0]);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function importsUnder(directory: string): Import[] {
  return readdirSync(join(repoRoot, directory), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => join(entry.parentPath, entry.name))
    .flatMap((file) => importsOf(file, readFileSync(file, 'utf8')));
}

/** Imports of the domain that point at an adapter or at the AWS SDK. */
function domainViolations(imports: Import[]): string[] {
  return imports
    .filter(
      ({ target }) =>
        target.startsWith('functions/salesforce/') ||
        target.startsWith('functions/aws/') ||
        target.startsWith('@aws-sdk/'),
    )
    .map(({ from, target }) => `${from} -> ${target}`);
}

describe('Dependency direction', () => {
  it('finds the imports of the domain (the scan itself works)', () => {
    // Act
    const imports = importsUnder('functions/broker');

    // Assess: a scan that found nothing would make the other tests pass vacuously.
    expect(imports.length).toBeGreaterThan(20);
    expect(imports.map((i) => i.target)).toContain('functions/broker/ports.ts');
  });

  it('reports a domain import of an adapter or of the AWS SDK, static or dynamic', () => {
    // Prepare
    const file = join(repoRoot, 'functions/broker/example.ts');
    const text = [
      "import { InvalidGrantError } from '../salesforce/errors.ts';",
      "export { awsUnavailable } from '../aws/errors.ts';",
      "import type { KMSClient } from '@aws-sdk/client-kms';",
      "const lazy = () => import('../salesforce/oauth-client.ts');",
      "import { UpstreamFailure } from './upstream.ts';",
    ].join('\n');

    // Act
    const violations = domainViolations(importsOf(file, text));

    // Assess
    expect(violations).toEqual([
      'functions/broker/example.ts -> functions/salesforce/errors.ts',
      'functions/broker/example.ts -> functions/aws/errors.ts',
      'functions/broker/example.ts -> @aws-sdk/client-kms',
      'functions/broker/example.ts -> functions/salesforce/oauth-client.ts',
    ]);
  });

  it('keeps functions/broker free of functions/salesforce, functions/aws and @aws-sdk', () => {
    // Act
    const violations = domainViolations(importsUnder('functions/broker'));

    // Assess
    expect(violations).toEqual([]);
  });

  it('keeps functions/shared dependency-free, so every side may import it', () => {
    // Act
    const imports = importsUnder('functions/shared');

    // Assess: the shared modules import only each other (the settings table uses the URL
    // predicates), so every side that imports one still depends on nothing else.
    expect(imports.map(({ from, target }) => `${from} -> ${target}`)).toContain(
      'functions/shared/settings-table.ts -> functions/shared/urls.ts',
    );
    expect(
      imports
        .filter(({ target }) => !target.startsWith('functions/shared/'))
        .map(({ from, target }) => `${from} -> ${target}`),
    ).toEqual([]);
  });
});
