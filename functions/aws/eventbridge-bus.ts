import {
  EventBridgeClient,
  PutEventsCommand,
  type PutEventsCommandOutput,
} from '@aws-sdk/client-eventbridge';
import type { BrokerEvent, EventBus, PutOutcome } from '../broker/events.ts';
import type { CallOptions } from '../broker/ports.ts';
import { awsUnavailable } from './errors.ts';

/**
 * {@link EventBus} on EventBridge `PutEvents`. A call that fails as a whole becomes
 * `TemporarilyUnavailableError`; entries the bus refused (`FailedEntryCount`) come back as
 * their `ErrorCode`, in order.
 * @see https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html
 */
export class EventBridgeBus implements EventBus {
  readonly #client: EventBridgeClient;
  readonly #busName: string;
  readonly #source: string;

  constructor(options: { busName: string; source: string; client?: EventBridgeClient }) {
    this.#client = options.client ?? new EventBridgeClient({});
    this.#busName = options.busName;
    this.#source = options.source;
  }

  async put(events: readonly BrokerEvent[], options?: CallOptions): Promise<PutOutcome[]> {
    let result: PutEventsCommandOutput;
    try {
      result = await this.#client.send(
        new PutEventsCommand({
          Entries: events.map((event) => ({
            EventBusName: this.#busName,
            Source: this.#source,
            DetailType: event.detailType,
            Detail: JSON.stringify(event.detail),
            Time: new Date(event.time),
          })),
        }),
        options?.timeoutMs === undefined
          ? {}
          : { abortSignal: AbortSignal.timeout(Math.max(1, options.timeoutMs)) },
      );
    } catch (error) {
      throw awsUnavailable('EventBridge', error);
    }
    const entries = result.Entries ?? [];
    return events.map((_, index) => {
      const entry = entries[index];
      if (entry === undefined) return 'MissingEntry';
      return entry.ErrorCode === undefined || entry.ErrorCode === '' ? undefined : entry.ErrorCode;
    });
  }
}
