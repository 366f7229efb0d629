/**
 * The metric names the functions may emit (`BROKER_METRIC_NAMES`, the type `MetricSink`
 * takes) and what the construct draws and alarms on are one list: a metric the functions
 * emit that nobody can see, or a widget on a metric nobody emits, fails here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BROKER_METRIC_NAMES } from '../../functions/shared/constants.ts';
import { BROKER_METRICS } from '../../infra/observability.ts';
import {
  repoRoot,
  resourcesOfType,
  SKIP_BUNDLING,
  type Synthesized,
  synthBroker,
} from './synth.ts';

function sourceFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('Metrics: functions, dashboard and alarms agree', () => {
  let synth: Synthesized;
  beforeAll(() => {
    synth = synthBroker(SKIP_BUNDLING);
  });

  it('names the same metrics in the construct as the functions may emit', () => {
    expect(new Set(Object.values(BROKER_METRICS))).toEqual(new Set(BROKER_METRIC_NAMES));
  });

  it('emits every listed metric somewhere in the functions', () => {
    // Prepare
    const source = sourceFiles(join(repoRoot, 'functions'))
      .map((file) => readFileSync(file, 'utf8'))
      .join('\n');

    // Assess: a literal count/timing call names it (a listed metric nobody emits is stale)
    for (const name of BROKER_METRIC_NAMES) {
      expect(source, name).toMatch(new RegExp(`\\.(count|timing)\\(\\s*'${name}'`));
    }
  });

  it('draws every metric on the dashboard', () => {
    const [dashboard] = Object.values(
      resourcesOfType(synth.template, 'AWS::CloudWatch::Dashboard'),
    );

    const body = JSON.stringify(dashboard?.Properties.DashboardBody);

    for (const name of BROKER_METRIC_NAMES) expect(body, name).toContain(`\\"${name}\\"`);
  });

  it('alarms only on metrics the functions emit', () => {
    const alarms = Object.values(resourcesOfType(synth.template, 'AWS::CloudWatch::Alarm'));

    // The broker's own alarms: a metric in its namespace (the others are AWS/* metrics).
    const alarmed = alarms
      .filter((alarm) => alarm.Properties.Namespace === 'TokenBroker')
      .map((alarm) => alarm.Properties.MetricName as string);

    expect(alarmed.length).toBeGreaterThanOrEqual(6);
    for (const name of alarmed)
      expect(BROKER_METRIC_NAMES as readonly string[], name).toContain(name);
  });
});
