/**
 * The events the broker publishes (README "Events"): what each carries, and the batch
 * logic of the publisher, which puts them on the bus and says which stream records must
 * come again. No token, handle, code or secret is ever part of an event: a detail holds
 * ids, a reason, times and Salesforce's error code.
 */
import type { EVENT_DETAIL_TYPES } from '../shared/constants.ts';
import type { CallOptions, EndedReason, Log } from './ports.ts';

export type EventDetailType = (typeof EVENT_DETAIL_TYPES)[keyof typeof EVENT_DETAIL_TYPES];

/** The `detail` of every event; members that do not apply are left out. */
export interface EventDetail {
  /** Unique per event and stable across redeliveries: subscribers deduplicate on it. */
  event_id: string;
  connection_id: string | null;
  organization_id: string | null;
  user_id: string | null;
  /** ISO 8601 (UTC, milliseconds): when it happened at the broker. */
  at: string;
  /** `Connection Ended` only. */
  reason?: EndedReason;
  /** Salesforce's `error` (`invalid_grant`, `invalid_client`, ...), where one applies. */
  salesforce_error?: string;
  /** Salesforce's `error_description` (`expired access/refresh token`), where one applies. */
  salesforce_error_description?: string;
  /** `Connection Refresh Failing`: when the run of transient failures began. */
  failing_since?: string;
  /** `Upstream Misconfigured`: the connected app Salesforce refused. */
  salesforce_app?: string;
}

export interface BrokerEvent {
  detailType: EventDetailType;
  detail: EventDetail;
  /** Epoch ms; the entry's `Time`. */
  time: number;
}

/** The events one stream record makes, under the record's id (its sequence number). */
export interface RecordEvents {
  id: string;
  events: BrokerEvent[];
}

/** One bus entry's outcome: `undefined` when it was put, else the bus's error code. */
export type PutOutcome = string | undefined;

/** The event bus (EventBridge `PutEvents`), at most {@link MAX_ENTRIES_PER_PUT} at a time. */
export interface EventBus {
  /** One outcome per event, in order; throws when the whole call failed. */
  put(events: readonly BrokerEvent[], options?: CallOptions): Promise<PutOutcome[]>;
}

/** `PutEvents` takes at most 10 entries per call. */
export const MAX_ENTRIES_PER_PUT = 10;

/**
 * Publishes the events of a batch of stream records in order, 10 entries per call, and
 * answers the id of the first record that is not completely published (a failed call, or
 * an entry the bus refused: `FailedEntryCount`), or `undefined` when all are. Stream
 * sources resume from the lowest failed record, so the records after it are not sent in
 * this round: they come again with it. Events of a record that went out before its
 * record failed go out again then (at least once; `event_id` is stable for
 * deduplication).
 */
export async function publishRecords(
  deps: { bus: EventBus; log: Log },
  records: readonly RecordEvents[],
  options?: { timeoutMs?: () => number },
): Promise<string | undefined> {
  const queue = records.flatMap((record) => record.events.map((event) => ({ record, event })));
  for (let start = 0; start < queue.length; start += MAX_ENTRIES_PER_PUT) {
    const chunk = queue.slice(start, start + MAX_ENTRIES_PER_PUT);
    const first = chunk[0];
    if (first === undefined) break;
    let outcomes: PutOutcome[];
    try {
      outcomes = await deps.bus.put(
        chunk.map((entry) => entry.event),
        { timeoutMs: options?.timeoutMs?.() },
      );
    } catch (error) {
      deps.log.warn('publishing events failed; the stream sends them again', {
        event: 'events_put_failed',
        error: error instanceof Error ? error.name : 'unknown',
        entries: chunk.length,
      });
      return first.record.id;
    }
    const failed = chunk.findIndex((_, index) => outcomes[index] !== undefined);
    if (failed >= 0) {
      deps.log.warn('the bus refused some events; the stream sends them again', {
        event: 'events_partly_failed',
        failedEntries: outcomes.filter((outcome) => outcome !== undefined).length,
        errorCode: outcomes[failed],
        entries: chunk.length,
      });
      return chunk[failed]?.record.id;
    }
  }
  for (const { event } of queue) {
    deps.log.info('event published', {
      event: 'event_published',
      detailType: event.detailType,
      eventId: event.detail.event_id,
      connection: event.detail.connection_id,
    });
  }
  return undefined;
}
