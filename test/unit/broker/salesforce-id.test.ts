import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../../functions/broker/errors.ts';
import {
  canonicalSalesforceId,
  ORGANIZATION_ID,
  USER_ID,
} from '../../../functions/broker/salesforce-id.ts';

describe('canonicalSalesforceId', () => {
  it.each([
    ['an 18-character id as is', '00Dxx0000001gPLEAY', '00Dxx0000001gPLEAY'],
    ['a 15-character id with its checksum suffix', '00Dxx0000001gPL', '00Dxx0000001gPLEAY'],
    ['an 18-character id with a lower-case suffix', '00Dxx0000001gPLeay', '00Dxx0000001gPLEAY'],
  ])('takes %s', (_name, input, expected) => {
    // Act
    const canonical = canonicalSalesforceId(input, ORGANIZATION_ID);

    // Assert
    expect(canonical).toBe(expected);
  });

  it.each([
    ['a wrong checksum', '00Dxx0000001gPLAAA', ORGANIZATION_ID],
    ['another key prefix', '005xx000001Sv6AAAS', ORGANIZATION_ID],
    ['an org id as a user id', '00Dxx0000001gPLEAY', USER_ID],
    ['16 characters', '00Dxx0000001gPLE', ORGANIZATION_ID],
    ['punctuation', '00Dxx0000001g-L', ORGANIZATION_ID],
    ['nothing', '', USER_ID],
  ])('refuses %s with 400 invalid_request naming the parameter', (_name, input, kind) => {
    // Act
    const act = () => canonicalSalesforceId(input, kind);

    // Assert
    expect(act).toThrow(InvalidRequestError);
    expect(act).toThrow(kind.parameter);
  });
});
