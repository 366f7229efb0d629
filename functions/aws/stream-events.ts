/**
 * Which change of which item is which event (README "Events"): reads a DynamoDB stream
 * record's old and new images of the session table. Pure; the item layout is this
 * adapter's knowledge (`dynamodb-session-store.ts`, `dynamodb-alert-store.ts`).
 *
 * - `Connection Created`: the INSERT of a live `connection#<id>` pointer;
 * - `Connection Ended`: the INSERT of an `ended#<session key>` tombstone, with its reason;
 * - `Connection Refresh Failing`: a session MODIFY whose new image gains `failingReportedAt`;
 * - `Connection Recovered`: a session MODIFY whose old image had it and the new one not;
 * - `Upstream Misconfigured`: an `alert#upstream_misconfigured#<app>` put (INSERT, or a
 *   MODIFY with a new `raisedAt`).
 *
 * The same rules, as event filters, keep every other write (lease writes above all) from
 * invoking the publisher at all: {@link STREAM_FILTER_PATTERNS}.
 */
import type { AttributeValue, DynamoDBRecord } from 'aws-lambda';
import type { BrokerEvent, EventDetail } from '../broker/events.ts';
import { ENDED_REASONS, type EndedReason } from '../broker/ports.ts';
import { EVENT_DETAIL_TYPES, ITEM_PREFIX } from '../shared/constants.ts';

type Image = Record<string, AttributeValue>;

const ALERT_PREFIX = `${ITEM_PREFIX.alert}upstream_misconfigured#`;

/**
 * The event source mapping's filter criteria (Lambda event filtering, ORed): only the
 * writes above reach the publisher.
 * @see https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html
 */
export const STREAM_FILTER_PATTERNS: readonly Record<string, unknown>[] = [
  {
    eventName: ['INSERT'],
    dynamodb: {
      Keys: { pk: { S: [{ prefix: ITEM_PREFIX.connection }, { prefix: ITEM_PREFIX.ended }] } },
    },
  },
  {
    eventName: ['INSERT', 'MODIFY'],
    dynamodb: { Keys: { pk: { S: [{ prefix: ALERT_PREFIX }] } } },
  },
  {
    eventName: ['MODIFY'],
    dynamodb: {
      Keys: { pk: { S: [{ prefix: ITEM_PREFIX.session }] } },
      NewImage: { failingReportedAt: { N: [{ exists: true }] } },
      OldImage: { failingReportedAt: { N: [{ exists: false }] } },
    },
  },
  {
    eventName: ['MODIFY'],
    dynamodb: {
      Keys: { pk: { S: [{ prefix: ITEM_PREFIX.session }] } },
      OldImage: { failingReportedAt: { N: [{ exists: true }] } },
      NewImage: { failingReportedAt: { N: [{ exists: false }] } },
    },
  },
];

/** The events of one stream record: zero (most writes) or one. Never throws. */
export function eventsOfRecord(record: DynamoDBRecord): BrokerEvent[] {
  const pk = record.dynamodb?.Keys?.pk?.S;
  const before = record.dynamodb?.OldImage as Image | undefined;
  const after = record.dynamodb?.NewImage as Image | undefined;
  const eventId = record.eventID ?? record.dynamodb?.SequenceNumber ?? '';
  if (pk === undefined) return [];
  const event = eventOf(record.eventName, pk, before, after);
  if (event === undefined) return [];
  const { detailType, time, ...rest } = event;
  const detail: EventDetail = {
    event_id: `${eventId}`,
    connection_id: null,
    organization_id: null,
    user_id: null,
    ...rest,
    at: new Date(time).toISOString(),
  };
  return [{ detailType, detail, time }];
}

type Draft = Omit<
  EventDetail,
  'event_id' | 'at' | 'connection_id' | 'organization_id' | 'user_id'
> & {
  detailType: BrokerEvent['detailType'];
  time: number;
  connection_id?: string | null;
  organization_id?: string | null;
  user_id?: string | null;
};

/**
 * Which event one item change is, if any: a pointer's INSERT is a created connection, an
 * `ended#` INSERT an ended one, a session's MODIFY that sets or clears `failingReportedAt`
 * a failing or recovered one, an alert item's new `raisedAt` a misconfigured app.
 */
function eventOf(
  eventName: DynamoDBRecord['eventName'],
  pk: string,
  before: Image | undefined,
  after: Image | undefined,
): Draft | undefined {
  if (after === undefined) return undefined;
  if (eventName === 'INSERT' && pk.startsWith(ITEM_PREFIX.connection)) {
    return createdEvent(pk.slice(ITEM_PREFIX.connection.length), after);
  }
  if (eventName === 'INSERT' && pk.startsWith(ITEM_PREFIX.ended)) return endedEvent(after);
  if (eventName === 'MODIFY' && pk.startsWith(ITEM_PREFIX.session) && before !== undefined) {
    return failingOrRecoveredEvent(before, after);
  }
  if ((eventName === 'INSERT' || eventName === 'MODIFY') && pk.startsWith(ALERT_PREFIX)) {
    return misconfiguredEvent(pk.slice(ALERT_PREFIX.length), before, after);
  }
  return undefined;
}

function createdEvent(connectionId: string, after: Image): Draft | undefined {
  if (after.kind?.S !== 'connection') return undefined;
  const time = num(after, 'createdAt');
  if (time === undefined) return undefined;
  return { detailType: EVENT_DETAIL_TYPES.created, time, ...ids(after, connectionId) };
}

function endedEvent(after: Image): Draft | undefined {
  const reason = after.endedReason?.S;
  const time = num(after, 'endedAt');
  const connectionId = after.connectionId?.S;
  if (!isEndedReason(reason) || time === undefined || connectionId === undefined) {
    return undefined;
  }
  return {
    detailType: EVENT_DETAIL_TYPES.ended,
    time,
    ...ids(after, connectionId),
    reason,
    ...upstream(after),
  };
}

function failingOrRecoveredEvent(before: Image, after: Image): Draft | undefined {
  const connectionId = after.connectionId?.S;
  if (connectionId === undefined) return undefined;
  const reportedBefore = num(before, 'failingReportedAt');
  const reportedAfter = num(after, 'failingReportedAt');
  if (reportedBefore === undefined && reportedAfter !== undefined) {
    const since = num(after, 'failingSince');
    return {
      detailType: EVENT_DETAIL_TYPES.failing,
      time: reportedAfter,
      ...ids(after, connectionId),
      ...(since === undefined ? {} : { failing_since: new Date(since).toISOString() }),
    };
  }
  if (reportedBefore !== undefined && reportedAfter === undefined) {
    return {
      detailType: EVENT_DETAIL_TYPES.recovered,
      time: num(after, 'committedAt') ?? reportedBefore,
      ...ids(after, connectionId),
    };
  }
  return undefined;
}

function misconfiguredEvent(
  app: string,
  before: Image | undefined,
  after: Image,
): Draft | undefined {
  const time = num(after, 'raisedAt');
  // A rewrite of the same alert (another instance raced to raise it) is not a new event.
  if (time === undefined || (before !== undefined && num(before, 'raisedAt') === time)) {
    return undefined;
  }
  return {
    detailType: EVENT_DETAIL_TYPES.misconfigured,
    time,
    connection_id: after.connectionId?.S ?? null,
    organization_id: after.orgId?.S ?? null,
    user_id: after.userId?.S ?? null,
    salesforce_app: after.app?.S ?? app,
    ...(after.upstreamError?.S === undefined ? {} : { salesforce_error: after.upstreamError.S }),
  };
}

function ids(image: Image, connectionId: string) {
  return {
    connection_id: connectionId,
    organization_id: image.orgId?.S ?? null,
    user_id: image.userId?.S ?? null,
  };
}

function upstream(image: Image) {
  return {
    ...(image.upstreamError?.S === undefined ? {} : { salesforce_error: image.upstreamError.S }),
    ...(image.upstreamDescription?.S === undefined
      ? {}
      : { salesforce_error_description: image.upstreamDescription.S }),
  };
}

function num(image: Image, name: string): number | undefined {
  const text = image[name]?.N;
  if (text === undefined) return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

function isEndedReason(value: string | undefined): value is EndedReason {
  return value !== undefined && (ENDED_REASONS as readonly string[]).includes(value);
}
