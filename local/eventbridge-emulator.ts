/**
 * Local EventBridge emulator (AWS JSON 1.1, X-Amz-Target `AWSEvents.PutEvents`), for the
 * real `@aws-sdk/client-eventbridge` pointed at it (`endpoint` or
 * `AWS_ENDPOINT_URL_EVENTBRIDGE`). It records every event it accepts and can be told to
 * fail: the whole call (`inject`, as the other emulators) or chosen entries of the next
 * calls (`failEntries`), answered as `FailedEntryCount` with an `ErrorCode` per entry, as
 * the service does.
 * @see https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html
 *
 * Only node built-ins; never writes to stdout/stderr.
 */
import { randomUUID } from 'node:crypto';
import {
  AwsJsonError,
  type AwsJsonServer,
  type EmulatorFault,
  type JsonObject,
  startAwsJsonServer,
  validationError,
} from './aws-json-server.ts';

/** One accepted event, as a rule target would get it. */
export interface RecordedEvent {
  id: string;
  source: string;
  'detail-type': string;
  /** Parsed `Detail`. */
  detail: Record<string, unknown>;
  /** ISO 8601. */
  time: string;
  eventBusName: string;
}

export interface EventBridgeEmulator {
  readonly url: string;
  readonly calls: Record<string, number>;
  /** Every accepted event, oldest first. */
  readonly events: readonly RecordedEvent[];
  /** Called for each accepted event (the demo page, `LOCAL_EVENTS_FILE`). */
  onEvent(listener: (event: RecordedEvent) => void): void;
  /** The next `calls` PutEvents refuse the entries at these indexes (`InternalFailure`). */
  failEntries(indexes: readonly number[], calls?: number): void;
  inject(fault: EmulatorFault): void;
  clearFaults(): void;
  resetCalls(): void;
  close(): Promise<void>;
}

const MAX_ENTRIES = 10;
const MAX_DETAIL_BYTES = 256 * 1024;

export async function startEventBridgeEmulator(
  opts: { port?: number; host?: string } = {},
): Promise<EventBridgeEmulator> {
  const events: RecordedEvent[] = [];
  const listeners: ((event: RecordedEvent) => void)[] = [];
  let entryFaults: { indexes: Set<number>; remaining: number }[] = [];

  const server: AwsJsonServer = await startAwsJsonServer(
    {
      targetPrefix: 'AWSEvents',
      faultError(kind) {
        switch (kind) {
          case 'throttle':
            return new AwsJsonError('ThrottlingException', 'Rate exceeded');
          case 'internal':
            return new AwsJsonError('InternalException', 'Internal error', 500);
          case 'disabled':
            return new AwsJsonError('ResourceNotFoundException', 'Event bus does not exist.');
          case 'access-denied':
            return new AwsJsonError(
              'AccessDeniedException',
              'User is not authorized to perform: events:PutEvents',
            );
        }
      },
      operations: {
        PutEvents(input: JsonObject) {
          const entries = input.Entries;
          if (!Array.isArray(entries) || entries.length < 1 || entries.length > MAX_ENTRIES) {
            throw validationError(`Entries must hold 1 to ${MAX_ENTRIES} entries`);
          }
          const fault = entryFaults[0];
          if (fault !== undefined) {
            fault.remaining -= 1;
            if (fault.remaining <= 0) entryFaults = entryFaults.slice(1);
          }
          const answers = entries.map((raw, index) => {
            const entry = (raw ?? {}) as JsonObject;
            if (fault?.indexes.has(index)) {
              return { ErrorCode: 'InternalFailure', ErrorMessage: 'Internal failure' };
            }
            const source = entry.Source;
            const detailType = entry.DetailType;
            const detail = entry.Detail;
            if (typeof source !== 'string' || typeof detailType !== 'string') {
              return {
                ErrorCode: 'InvalidArgument',
                ErrorMessage: 'Source and DetailType required',
              };
            }
            if (typeof detail !== 'string' || Buffer.byteLength(detail) > MAX_DETAIL_BYTES) {
              return { ErrorCode: 'InvalidArgument', ErrorMessage: 'Detail must be JSON' };
            }
            let parsed: unknown;
            try {
              parsed = JSON.parse(detail);
            } catch {
              return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' };
            }
            if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
              return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is not an object.' };
            }
            const id = randomUUID();
            const time = typeof entry.Time === 'number' ? new Date(entry.Time * 1000) : new Date();
            const recorded: RecordedEvent = {
              id,
              source,
              'detail-type': detailType,
              detail: parsed as Record<string, unknown>,
              time: time.toISOString(),
              eventBusName: typeof entry.EventBusName === 'string' ? entry.EventBusName : 'default',
            };
            events.push(recorded);
            for (const listener of listeners) {
              try {
                listener(recorded);
              } catch {
                // A listener's failure is its own.
              }
            }
            return { EventId: id };
          });
          const failed = answers.filter((answer) => 'ErrorCode' in answer).length;
          return { FailedEntryCount: failed, Entries: answers };
        },
      },
    },
    opts,
  );

  return {
    url: server.url,
    calls: server.calls,
    events,
    onEvent(listener) {
      listeners.push(listener);
    },
    failEntries(indexes, calls = 1) {
      entryFaults.push({ indexes: new Set(indexes), remaining: calls });
    },
    inject: (fault) => server.inject(fault),
    clearFaults() {
      entryFaults = [];
      server.clearFaults();
    },
    resetCalls: () => server.resetCalls(),
    close: () => server.close(),
  };
}
