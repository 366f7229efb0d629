import { Duration } from 'aws-cdk-lib';
import type { IHttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import {
  Alarm,
  AlarmStatusWidget,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  Metric,
  SingleValueWidget,
  TextWidget,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

/**
 * Metric names the functions emit in Embedded Metric Format (Powertools Metrics), with
 * the `service` dimension Powertools adds to every metric.
 */
export const BROKER_METRICS = {
  refreshCommitted: 'RefreshCommitted',
  refreshCoalesced: 'RefreshCoalesced',
  leaseWaitMs: 'LeaseWaitMs',
  upstreamLatencyMs: 'UpstreamLatencyMs',
  upstreamError: 'UpstreamError',
  reauthenticationRequired: 'ReauthenticationRequired',
  integrityError: 'IntegrityError',
  upstreamMisconfigured: 'UpstreamMisconfigured',
  rotationLost: 'RotationLost',
} as const;

/** Values of the `class` dimension of `UpstreamError`. */
export const UPSTREAM_ERROR_CLASSES = [
  'unavailable',
  'invalid_grant',
  'invalid_client',
  'concurrent',
  'invalid_response',
] as const;

export interface BrokerObservabilityProps {
  namespace: string;
  serviceName: string;
  api: IHttpApi;
  functions: Record<string, IFunction>;
  topic: ITopic;
  /** Percentage of 5xx answers over 5 minutes that raises the alarm (default 5). */
  serverErrorRatePercent?: number;
}

/**
 * Alarms on what needs a person, and one dashboard for the rest:
 * - `ServerErrorRate`: 5xx answers (503 while Salesforce is down, 502 misconfiguration,
 *   500 bugs) above 5 % of at least 20 requests, in 2 of 3 five-minute periods;
 * - `UpstreamMisconfigured`: Salesforce refused the client credentials even after a
 *   secret re-read (wrong or rotated consumer secret): every login and refresh fails;
 * - `IntegrityErrors`: a stored session failed to decrypt or parse (tampering, a copied
 *   item, or a bug that wrote a bad item);
 * - `Throttles`: Lambda refused invocations (account or reserved concurrency exhausted).
 */
export class BrokerObservability extends Construct {
  readonly alarms: Alarm[];
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: BrokerObservabilityProps) {
    super(scope, id);
    const period = Duration.minutes(5);
    const broker = (metricName: string, statistic = 'Sum', extra: Record<string, string> = {}) =>
      new Metric({
        namespace: props.namespace,
        metricName,
        dimensionsMap: { service: props.serviceName, ...extra },
        statistic,
        period,
      });

    const requests = props.api.metricCount({ period, statistic: 'Sum' });
    const serverErrors = props.api.metricServerError({ period, statistic: 'Sum' });
    const serverErrorRate = new MathExpression({
      label: '5xx %',
      expression: 'IF(requests >= 20, 100 * errors / requests, 0)',
      usingMetrics: { requests, errors: serverErrors },
      period,
    });
    const functions = Object.entries(props.functions);
    const throttles = new MathExpression({
      label: 'Lambda throttles',
      expression: functions.map((_, index) => `t${index}`).join(' + '),
      usingMetrics: Object.fromEntries(
        functions.map(([, fn], index) => [`t${index}`, fn.metricThrottles({ period })]),
      ),
      period,
    });

    const action = new SnsAction(props.topic);
    const alarm = (
      name: string,
      metric: IMetric,
      threshold: number,
      description: string,
      evaluation = { evaluationPeriods: 1, datapointsToAlarm: 1 },
    ) => {
      const created = new Alarm(this, name, {
        alarmDescription: description,
        metric,
        threshold,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
        ...evaluation,
      });
      created.addAlarmAction(action);
      created.addOkAction(action);
      return created;
    };

    const rate = props.serverErrorRatePercent ?? 5;
    this.alarms = [
      alarm(
        'ServerErrorRate',
        serverErrorRate,
        rate,
        `More than ${rate} % of broker requests answered 5xx (Salesforce unavailable, misconfiguration or a bug). See the function logs.`,
        { evaluationPeriods: 3, datapointsToAlarm: 2 },
      ),
      alarm(
        'UpstreamMisconfigured',
        broker(BROKER_METRICS.upstreamMisconfigured),
        1,
        'Salesforce rejected the client credentials after a secret re-read: check the secret (client_id/client_secret) against the connected app.',
      ),
      alarm(
        'IntegrityErrors',
        broker(BROKER_METRICS.integrityError),
        1,
        'A stored session failed to decrypt or parse (copied or tampered item, or a bad write). Investigate before it spreads.',
      ),
      alarm(
        'Throttles',
        throttles,
        1,
        'Lambda throttled broker invocations: raise the account concurrency or lower API throttling.',
      ),
    ];

    const graph = (title: string, left: IMetric[], right: IMetric[] = []) =>
      new GraphWidget({ title, left, right, width: 12, height: 6 });
    const upstreamLatency = (statistic: string) =>
      broker(BROKER_METRICS.upstreamLatencyMs, statistic).with({ label: `upstream ${statistic}` });
    const leaseWait = (statistic: string) =>
      broker(BROKER_METRICS.leaseWaitMs, statistic).with({ label: `lease wait ${statistic}` });

    this.dashboard = new Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(12),
    });
    this.dashboard.addWidgets(
      new TextWidget({
        markdown: `# Token broker \`${props.serviceName}\`\nNamespace \`${props.namespace}\`. Alarms go to the alarm topic.`,
        width: 24,
        height: 2,
      }),
      new AlarmStatusWidget({ alarms: this.alarms, width: 24, height: 3 }),
      graph(
        'API requests and errors',
        [requests.with({ label: 'requests' })],
        [
          props.api.metricClientError({ period, statistic: 'Sum' }).with({ label: '4xx' }),
          serverErrors.with({ label: '5xx' }),
        ],
      ),
      graph('API latency', [
        props.api.metricLatency({ period, statistic: 'p50' }),
        props.api.metricLatency({ period, statistic: 'p99' }),
        props.api.metricIntegrationLatency({ period, statistic: 'p99' }),
      ]),
      graph('Refreshes', [
        broker(BROKER_METRICS.refreshCommitted).with({ label: 'committed (one Salesforce call)' }),
        broker(BROKER_METRICS.refreshCoalesced).with({ label: 'coalesced callers' }),
        broker(BROKER_METRICS.reauthenticationRequired).with({
          label: 're-authentication required',
        }),
      ]),
      graph('Upstream latency and lease wait (ms)', [
        upstreamLatency('p50'),
        upstreamLatency('p99'),
        leaseWait('p50'),
        leaseWait('p99'),
      ]),
      graph(
        'Upstream errors by class',
        UPSTREAM_ERROR_CLASSES.map((errorClass) =>
          broker(BROKER_METRICS.upstreamError, 'Sum', { class: errorClass }).with({
            label: errorClass,
          }),
        ),
      ),
      graph('Needs attention', [
        broker(BROKER_METRICS.upstreamMisconfigured).with({ label: 'upstream misconfigured' }),
        broker(BROKER_METRICS.integrityError).with({ label: 'integrity errors' }),
        broker(BROKER_METRICS.rotationLost).with({ label: 'rotation lost' }),
      ]),
      graph(
        'Function duration p99 (ms)',
        functions.map(([name, fn]) =>
          fn.metricDuration({ period, statistic: 'p99' }).with({ label: name }),
        ),
      ),
      graph(
        'Function errors and throttles',
        functions.map(([name, fn]) =>
          fn.metricErrors({ period }).with({ label: `${name} errors` }),
        ),
        [throttles],
      ),
      new SingleValueWidget({
        title: 'Concurrent executions (max)',
        metrics: functions.map(([name, fn]) =>
          fn.metric('ConcurrentExecutions', { period, statistic: 'Maximum' }).with({ label: name }),
        ),
        width: 24,
        height: 4,
      }),
    );
  }
}
