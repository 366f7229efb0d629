/**
 * Synthesizes the real CDK app (`infra/app.ts`, with cdk-nag) for the infra tests, with
 * `cdk.json`'s context plus overrides, into a private directory. Synthesis bundles the
 * functions with esbuild for real, so each test file synthesizes once per variant.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildApp } from '../../infra/app.ts';

export const repoRoot = join(import.meta.dirname, '..', '..');

export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(join(repoRoot, 'cdk.json'), 'utf8')) as {
    context: Record<string, unknown>;
  };
  return cdkJson.context;
}

/**
 * Context that skips bundling the functions (CDK's own `aws:cdk:bundling-stacks`): for
 * tests about the template's resources rather than the code, synth then takes seconds.
 * cdk-nag still runs.
 */
export const SKIP_BUNDLING = { 'aws:cdk:bundling-stacks': [] };

export interface NagViolation {
  ruleName: string;
  severity: string;
  constructs: string[];
}

export interface Synthesized {
  app: App;
  stack: Stack;
  template: Template;
  outdir: string;
  /** cdk-nag findings left after acknowledgements (the validation report). */
  violations: NagViolation[];
}

export function synthBroker(context: Record<string, unknown> = {}): Synthesized {
  const outdir = mkdtempSync(join(tmpdir(), 'token-broker-synth-'));
  const app = new App({ outdir, context: { ...cdkJsonContext(), ...context } });
  const { stack } = buildApp(app);
  let violations: NagViolation[] = [];
  try {
    app.synth();
  } catch (error) {
    if (!existsSync(join(outdir, 'validation-report.json'))) throw error;
    violations = readViolations(outdir);
    if (violations.length === 0) throw error;
  }
  // Template.fromStack reuses the assembly synthesized above.
  const template = violations.length === 0 ? Template.fromStack(stack) : Template.fromJSON({});
  return { app, stack, template, outdir, violations };
}

function readViolations(outdir: string): NagViolation[] {
  const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as {
    pluginReports: {
      violations: {
        ruleName: string;
        severity: string;
        violatingConstructs: { constructPath: string }[];
      }[];
    }[];
  };
  return report.pluginReports.flatMap((plugin) =>
    plugin.violations.map((violation) => ({
      ruleName: violation.ruleName,
      severity: violation.severity,
      constructs: violation.violatingConstructs.map((c) => c.constructPath),
    })),
  );
}

/** The template's resources of one type, by logical id. */
export function resourcesOfType(
  template: Template,
  type: string,
): Record<string, { Properties: Record<string, unknown>; [key: string]: unknown }> {
  return template.findResources(type) as Record<
    string,
    { Properties: Record<string, unknown>; [key: string]: unknown }
  >;
}
