import { InvalidRequestError } from './errors.ts';

const CHECKSUM_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345';
const ID_PATTERN = /^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$/;

/** The key prefixes of the ids the service API takes: organizations and users. */
export type SalesforceIdKind = { parameter: string; keyPrefix: '00D' | '005' };

/**
 * A Salesforce record id as the broker stores it: the 18-character, case-insensitive form
 * that Salesforce's identity URL carries. A 15-character id (case-sensitive, as Setup
 * shows it) gets its checksum suffix; an 18-character id must carry the right one
 * (compared case-insensitively, as Salesforce does). Anything else is `400
 * invalid_request`, before any store call.
 * @see https://help.salesforce.com/s/articleView?id=000385008&type=1
 */
export function canonicalSalesforceId(value: string, kind: SalesforceIdKind): string {
  const invalid = () =>
    new InvalidRequestError(
      `"${kind.parameter}" must be a 15- or 18-character Salesforce id starting with ${kind.keyPrefix}.`,
    );
  if (!ID_PATTERN.test(value) || !value.startsWith(kind.keyPrefix)) throw invalid();
  const id15 = value.slice(0, 15);
  const suffix = checksumSuffix(id15);
  if (value.length === 18 && value.slice(15).toUpperCase() !== suffix) throw invalid();
  return id15 + suffix;
}

/** The 3 characters that encode which of the 15 characters are upper case, 5 at a time. */
function checksumSuffix(id15: string): string {
  let suffix = '';
  for (let chunk = 0; chunk < 3; chunk++) {
    let bits = 0;
    for (let index = 0; index < 5; index++) {
      const character = id15.charAt(chunk * 5 + index);
      if (character >= 'A' && character <= 'Z') bits |= 1 << index;
    }
    suffix += CHECKSUM_CHARS.charAt(bits);
  }
  return suffix;
}

export const ORGANIZATION_ID: SalesforceIdKind = { parameter: 'organization_id', keyPrefix: '00D' };
export const USER_ID: SalesforceIdKind = { parameter: 'user_id', keyPrefix: '005' };
