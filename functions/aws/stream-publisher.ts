import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { type EventBus, publishRecords } from '../broker/events.ts';
import type { Log } from '../broker/ports.ts';
import { eventsOfRecord } from './stream-events.ts';

/** Time kept back from the invocation for answering. */
const ANSWER_RESERVE_MS = 500;

export interface PublisherDependencies {
  bus: EventBus;
  log: Log;
}

export type PublisherHandler = (
  event: DynamoDBStreamEvent,
  context?: { getRemainingTimeInMillis?: () => number },
) => Promise<DynamoDBBatchResponse>;

/**
 * The publisher's batch logic (README "Events"): each stream record's events
 * (`stream-events.ts`) go to the bus in order, and the answer names the first record that
 * is not fully published (`ReportBatchItemFailures`), so the stream sends it, and every
 * record after it, again. Nothing is dropped here: a record that makes no event is done.
 * Each bus call ends before the invocation does.
 */
export function createPublisherHandler(deps: PublisherDependencies): PublisherHandler {
  return async (event, context) => {
    const started = Date.now();
    const remaining = () =>
      context?.getRemainingTimeInMillis?.() ?? Math.max(1, 10_000 - (Date.now() - started));
    const records = (event.Records ?? []).map((record, index) => ({
      id: record.dynamodb?.SequenceNumber ?? String(index),
      events: eventsOfRecord(record),
    }));
    const failed = await publishRecords(deps, records, {
      timeoutMs: () => Math.max(1, remaining() - ANSWER_RESERVE_MS),
    });
    return { batchItemFailures: failed === undefined ? [] : [{ itemIdentifier: failed }] };
  };
}
