import { describe, expect, it } from 'vitest';
import { tombstoneFromItem } from '../../../functions/aws/dynamodb-session-store.ts';

const NOW = 1_800_000_000_000;
const CONNECTION_ID = 'con_AAAAAAAAAAAAAAAAAAAAAA';

/** A marked pointer as the adapter writes it (README "Ended connections"). */
const markedPointer = () => ({
  pk: { S: `connection#${CONNECTION_ID}` },
  kind: { S: 'tombstone' },
  sessionKey: { S: 'session-key' },
  endedReason: { S: 'service_api' },
  endedAt: { N: String(NOW - 1000) },
  orgId: { S: '00Dxx0000001gPLEAY' },
  userId: { S: '005xx000001Sv6AAAS' },
  ttl: { N: String(Math.ceil((NOW + 30 * 86_400_000) / 1000)) },
});

describe('Function: tombstoneFromItem (the DynamoDB mapping of a tombstone)', () => {
  it('reads a marked pointer: its id from the key, the reason, the time and the ids', () => {
    // Act
    const tombstone = tombstoneFromItem(markedPointer(), NOW);

    // Assert
    expect(tombstone).toEqual({
      connectionId: CONNECTION_ID,
      orgId: '00Dxx0000001gPLEAY',
      userId: '005xx000001Sv6AAAS',
      reason: 'service_api',
      endedAt: NOW - 1000,
    });
  });

  it('reads an ended# item: its connection id from the attribute', () => {
    // Prepare
    const item = {
      ...markedPointer(),
      pk: { S: 'ended#session-key' },
      connectionId: { S: CONNECTION_ID },
      endedReason: { S: 'reauthentication_required' },
    };

    // Act
    const tombstone = tombstoneFromItem(item, NOW);

    // Assert
    expect(tombstone).toMatchObject({
      connectionId: CONNECTION_ID,
      reason: 'reauthentication_required',
    });
  });

  it.each([
    ['no item', undefined],
    ['a live pointer', { pk: markedPointer().pk, sessionKey: { S: 'session-key' } }],
    ['an unknown reason', { ...markedPointer(), endedReason: { S: 'forgotten' } }],
    ['no ended_at', { ...markedPointer(), endedAt: undefined }],
    ['a non-numeric ended_at', { ...markedPointer(), endedAt: { N: 'soon' } }],
    ['a retention past (TTL deletes late)', { ...markedPointer(), ttl: { N: String(NOW / 1000) } }],
  ])('is undefined for %s', (_name, item) => {
    // Act / Assert
    // biome-ignore lint/suspicious/noExplicitAny: malformed items on purpose
    expect(tombstoneFromItem(item as any, NOW)).toBeUndefined();
  });
});
