/**
 * Every log event the functions mark `alarm` has an alarm behind it: the events found in
 * the source of `functions/`, the table `ALARMED_LOG_EVENTS` and the alarms of the
 * synthesized template must agree.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { ALARMED_LOG_EVENTS } from '../../infra/observability.ts';
import {
  repoRoot,
  resourcesOfType,
  SKIP_BUNDLING,
  type Synthesized,
  synthBroker,
} from './synth.ts';

/**
 * Events of the table that the functions do not log with `alarm` yet: each is on its way
 * (the alarm ships first, so it exists when the event does). Remove an entry once the
 * functions log it; the set should be empty.
 */
const UPCOMING = new Set<string>([
  // Events mapped to an alarm before the functions log them; none at the moment.
]);

interface LogEvent {
  event: string;
  /** `alarm` is present and not the literal `false` (`alarm: configuration` counts). */
  alarmed: boolean;
  where: string;
}

/**
 * The `{ event: '<name>', ... }` attribute objects passed to log calls
 * (`log.error(...)`, `deps.log[level](...)`) in every `.ts` file under `functions/`.
 */
function logEventsIn(directory: string): LogEvent[] {
  const found: LogEvent[] = [];
  for (const file of typeScriptFiles(directory)) {
    const text = readFileSync(file, 'utf8');
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
    const visit = (node: ts.Node) => {
      if (ts.isCallExpression(node) && isLogCall(node.expression)) {
        for (const argument of node.arguments) {
          if (!ts.isObjectLiteralExpression(argument)) continue;
          const event = property(argument, 'event');
          if (!event || !ts.isStringLiteralLike(event)) continue;
          const alarm = property(argument, 'alarm');
          found.push({
            event: event.text,
            alarmed: alarm !== undefined && alarm.kind !== ts.SyntaxKind.FalseKeyword,
            where: `${relative(repoRoot, file)}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1}`,
          });
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return found;
}

/** `<anything>.log.<level>` or `<anything>.log[<level>]`, or a bare `log.<level>`. */
function isLogCall(callee: ts.Expression): boolean {
  const target =
    ts.isPropertyAccessExpression(callee) || ts.isElementAccessExpression(callee)
      ? callee.expression
      : undefined;
  if (!target) return false;
  if (ts.isIdentifier(target)) return target.text === 'log';
  return ts.isPropertyAccessExpression(target) && target.name.text === 'log';
}

function property(object: ts.ObjectLiteralExpression, name: string): ts.Expression | undefined {
  for (const member of object.properties) {
    if (ts.isPropertyAssignment(member) && member.name.getText() === name) {
      return member.initializer;
    }
    if (ts.isShorthandPropertyAssignment(member) && member.name.text === name) {
      return member.name;
    }
  }
  return undefined;
}

function typeScriptFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => join(entry.parentPath, entry.name));
}

describe('Alarms: ALARMED_LOG_EVENTS against the functions and the template', () => {
  const mapped = ALARMED_LOG_EVENTS as Record<string, string>;
  let events: LogEvent[];
  let synth: Synthesized;

  beforeAll(() => {
    events = logEventsIn(join(repoRoot, 'functions'));
    synth = synthBroker(SKIP_BUNDLING);
  });

  it('finds the log events of the functions (the scan itself works)', () => {
    // Assess: a scan that found nothing would make the other tests pass vacuously.
    expect(events.length).toBeGreaterThan(20);
    expect(events.filter((e) => e.alarmed).map((e) => e.event)).toEqual(
      expect.arrayContaining(['upstream_misconfigured', 'rotation_lost', 'revoke_failed']),
    );
  });

  it('maps every event logged with alarm to a metric', () => {
    // Act
    const unmapped = events.filter((e) => e.alarmed && !(e.event in mapped));

    // Assess
    expect(unmapped.map((e) => `${e.event} (${e.where})`)).toEqual([]);
  });

  it('maps only events the functions still log with alarm, or ones listed as upcoming', () => {
    // Act
    const alarmedInSource = new Set(events.filter((e) => e.alarmed).map((e) => e.event));
    const stale = Object.keys(mapped).filter(
      (event) => !alarmedInSource.has(event) && !UPCOMING.has(event),
    );

    // Assess
    expect(stale).toEqual([]);
    for (const event of UPCOMING) expect(mapped).toHaveProperty(event);
  });

  it('has an alarm to the alarm topic on each mapped metric, any occurrence', () => {
    // Prepare
    const alarms = Object.values(resourcesOfType(synth.template, 'AWS::CloudWatch::Alarm'));

    // Act
    const byMetric = new Map(
      alarms
        .filter((alarm) => typeof alarm.Properties.MetricName === 'string')
        .map((alarm) => [alarm.Properties.MetricName as string, alarm.Properties]),
    );

    // Assess
    expect(synth.violations).toEqual([]);
    for (const metricName of new Set(Object.values(mapped))) {
      expect(byMetric.get(metricName), metricName).toMatchObject({
        Namespace: 'TokenBroker',
        Dimensions: [{ Name: 'service', Value: 'TokenBroker' }],
        Statistic: 'Sum',
        Period: 300,
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
        AlarmActions: [expect.objectContaining({ Ref: expect.any(String) })],
      });
    }
  });

  it('draws every mapped metric on the dashboard', () => {
    // Prepare
    const [dashboard] = Object.values(
      resourcesOfType(synth.template, 'AWS::CloudWatch::Dashboard'),
    );

    // Act
    const body = JSON.stringify(dashboard?.Properties.DashboardBody);

    // Assess
    for (const metricName of new Set(Object.values(mapped))) {
      expect(body).toContain(`\\"${metricName}\\"`);
    }
  });
});
