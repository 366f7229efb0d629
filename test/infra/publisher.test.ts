/**
 * The events' infrastructure (README "Events"): the table's stream, the bus (made, or
 * imported by `eventBusArn`), the publisher with its filtered event source mapping, its
 * dead-letter queue and alarm, and `events:PutEvents` on that bus only.
 */
import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { STREAM_FILTER_PATTERNS } from '../../functions/aws/stream-events.ts';
import { PUBLISHER_MAX_RECORD_AGE, PUBLISHER_RETRY_ATTEMPTS } from '../../infra/token-broker.ts';
import { resourcesOfType, SKIP_BUNDLING, type Synthesized, synthBroker } from './synth.ts';

// biome-ignore lint/suspicious/noExplicitAny: template resources are untyped JSON
type Resource = { Type: string; Properties: Record<string, any> };

function publisherPolicyStatements(synth: Synthesized) {
  const policies = resourcesOfType(synth.template, 'AWS::IAM::Policy') as Record<string, Resource>;
  const publisher = Object.entries(policies).find(([id]) => id.includes('PublisherRole'));
  if (!publisher) throw new Error('no publisher role policy');
  return publisher[1].Properties.PolicyDocument.Statement as Record<string, unknown>[];
}

describe('events infrastructure (default: a bus of its own)', () => {
  let synth: Synthesized;
  beforeAll(() => {
    synth = synthBroker(SKIP_BUNDLING);
  });

  it('passes cdk-nag', () => {
    expect(synth.violations).toEqual([]);
  });

  it('streams both images of the table and creates the bus', () => {
    synth.template.hasResourceProperties('AWS::DynamoDB::Table', {
      StreamSpecification: { StreamViewType: 'NEW_AND_OLD_IMAGES' },
    });
    synth.template.resourceCountIs('AWS::Events::EventBus', 1);
  });

  it('maps the stream to the publisher filtered, answering failed records, bisecting, bounded, with a DLQ', () => {
    const mappings = Object.values(
      resourcesOfType(synth.template, 'AWS::Lambda::EventSourceMapping'),
    ) as Resource[];
    expect(mappings).toHaveLength(1);
    const mapping = mappings[0]?.Properties ?? {};
    expect(mapping).toMatchObject({
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BisectBatchOnFunctionError: true,
      MaximumRetryAttempts: PUBLISHER_RETRY_ATTEMPTS,
      MaximumRecordAgeInSeconds: PUBLISHER_MAX_RECORD_AGE.toSeconds(),
      StartingPosition: 'TRIM_HORIZON',
      DestinationConfig: { OnFailure: { Destination: expect.anything() } },
    });
    const patterns = (mapping.FilterCriteria.Filters as { Pattern: string }[]).map((filter) =>
      JSON.parse(filter.Pattern),
    );
    expect(patterns).toEqual(STREAM_FILTER_PATTERNS);
  });

  it('lets the publisher put events on that bus and nothing else on the bus side', () => {
    const statements = publisherPolicyStatements(synth);
    const publish = statements.filter((statement) =>
      JSON.stringify(statement.Action).includes('events:'),
    );
    expect(publish).toEqual([
      expect.objectContaining({
        Sid: 'PublishEvents',
        Action: 'events:PutEvents',
        Resource: { 'Fn::GetAtt': [expect.stringMatching(/EventBus/), 'Arn'] },
      }),
    ]);
    // No table item access: the publisher reads only the stream.
    expect(JSON.stringify(statements)).not.toMatch(
      /dynamodb:(GetItem|PutItem|UpdateItem|DeleteItem|Query)/,
    );
  });

  it('alarms on the first message in the dead-letter queue', () => {
    synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Namespace: 'AWS/SQS',
      Threshold: 1,
      AlarmActions: Match.anyValue(),
    });
  });
});

describe('events infrastructure with eventBusArn', () => {
  const busArn = 'arn:aws:events:eu-west-1:111111111111:event-bus/shared-bus';
  let synth: Synthesized;
  beforeAll(() => {
    synth = synthBroker({ ...SKIP_BUNDLING, eventBusArn: busArn });
  });

  it('creates no bus and grants PutEvents on the given one only', () => {
    synth.template.resourceCountIs('AWS::Events::EventBus', 0);
    const publish = publisherPolicyStatements(synth).filter(
      (statement) => statement.Sid === 'PublishEvents',
    );
    expect(publish).toEqual([expect.objectContaining({ Resource: busArn })]);
    expect(synth.violations).toEqual([]);
  });

  it('refuses an eventBusArn that is not one', () => {
    expect(() => synthBroker({ ...SKIP_BUNDLING, eventBusArn: 'shared-bus' })).toThrow(
      /eventBusArn/,
    );
  });
});
