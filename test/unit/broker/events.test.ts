import { describe, expect, it } from 'vitest';
import {
  type BrokerEvent,
  type EventBus,
  MAX_ENTRIES_PER_PUT,
  publishRecords,
} from '../../../functions/broker/events.ts';
import { CaptureLog } from '../../support/capture-log.ts';

const event = (id: string): BrokerEvent => ({
  detailType: 'Connection Created',
  detail: { event_id: id, connection_id: 'con_x', organization_id: null, user_id: null, at: 'now' },
  time: 0,
});

/** `count` records of one event each, ids r0, r1, ... */
const records = (count: number) =>
  Array.from({ length: count }, (_, index) => ({ id: `r${index}`, events: [event(`e${index}`)] }));

describe('Function: publishRecords (the publisher batch logic)', () => {
  it('puts every event in order, at most 10 per call, and reports nothing when all went out', async () => {
    // Prepare
    const calls: string[][] = [];
    const bus: EventBus = {
      async put(events) {
        calls.push(events.map((e) => e.detail.event_id));
        return events.map(() => undefined);
      },
    };

    // Act
    const failed = await publishRecords({ bus, log: new CaptureLog() }, [
      ...records(23),
      { id: 'empty', events: [] },
    ]);

    // Assert
    expect(failed).toBeUndefined();
    expect(calls.map((call) => call.length)).toEqual([MAX_ENTRIES_PER_PUT, 10, 3]);
    expect(calls.flat()).toEqual(Array.from({ length: 23 }, (_, index) => `e${index}`));
  });

  it('reports the record of the first refused entry and sends nothing after its call', async () => {
    // Prepare
    const calls: number[] = [];
    const bus: EventBus = {
      async put(events) {
        calls.push(events.length);
        return events.map((_, index) =>
          index === 4 || index === 7 ? 'InternalFailure' : undefined,
        );
      },
    };
    const log = new CaptureLog();

    // Act
    const failed = await publishRecords({ bus, log }, records(25));

    // Assert
    expect(failed).toBe('r4');
    expect(calls).toEqual([10]);
    const warning = log.entries.find((entry) => entry.attributes.event === 'events_partly_failed');
    expect(warning?.attributes).toMatchObject({ failedEntries: 2, errorCode: 'InternalFailure' });
  });

  it('reports the first record of a call that failed as a whole', async () => {
    // Prepare
    let call = 0;
    const bus: EventBus = {
      async put(events) {
        call += 1;
        if (call === 2) throw new Error('down');
        return events.map(() => undefined);
      },
    };

    // Act
    const failed = await publishRecords({ bus, log: new CaptureLog() }, records(15));

    // Assert
    expect(failed).toBe('r10');
  });
});
