import { InvalidRequestError } from '../broker/errors.ts';

/** Longest raw query string accepted (API Gateway allows far more). */
export const MAX_QUERY_BYTES = 8 * 1024;
/** Longest decoded value of one parameter. */
export const MAX_PARAMETER_BYTES = 2 * 1024;

/** Every value of every parameter, in order; duplicates are kept so callers can refuse them. */
export type QueryParameters = ReadonlyMap<string, readonly string[]>;

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses `rawQueryString` strictly (`application/x-www-form-urlencoded`, WHATWG URL
 * "urlencoded parsing" with errors instead of repairs): bad percent-encoding, invalid
 * UTF-8, control characters (CR, LF, NUL, ...) in a name or value, a value over
 * {@link MAX_PARAMETER_BYTES} or a query over {@link MAX_QUERY_BYTES} throw
 * `InvalidRequestError`. API Gateway's `queryStringParameters` is not used: it joins
 * repeated parameters with commas, which hides a duplicated `code` or `state`.
 * @see https://url.spec.whatwg.org/#urlencoded-parsing
 * @see https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
 */
export function parseQuery(rawQueryString: string): QueryParameters {
  if (rawQueryString.length > MAX_QUERY_BYTES) {
    throw new InvalidRequestError(`The query string must not exceed ${MAX_QUERY_BYTES} bytes.`);
  }
  // Only printable ASCII may appear raw in a query; everything else arrives percent-encoded.
  if (!/^[\x21-\x7E]*$/.test(rawQueryString)) {
    throw new InvalidRequestError('The query string holds characters that must be encoded.');
  }
  const parameters = new Map<string, string[]>();
  for (const pair of rawQueryString.split('&')) {
    if (pair === '') continue;
    const index = pair.indexOf('=');
    const name = decodeComponent(index < 0 ? pair : pair.slice(0, index));
    const value = decodeComponent(index < 0 ? '' : pair.slice(index + 1));
    if (Buffer.byteLength(value, 'utf8') > MAX_PARAMETER_BYTES) {
      throw new InvalidRequestError(
        `Query parameter values must not exceed ${MAX_PARAMETER_BYTES} bytes.`,
      );
    }
    const values = parameters.get(name);
    if (values) values.push(value);
    else parameters.set(name, [value]);
  }
  return parameters;
}

/**
 * The single value of `name`, or `undefined` when absent. A repeated parameter is
 * ambiguous (which `state` did Salesforce send?) and throws `InvalidRequestError`.
 */
export function singleParameter(query: QueryParameters, name: string): string | undefined {
  const values = query.get(name);
  if (values === undefined) return undefined;
  if (values.length !== 1) {
    throw new InvalidRequestError(`The query parameter "${name}" must appear at most once.`);
  }
  return values[0];
}

function decodeComponent(raw: string): string {
  const text = raw.replaceAll('+', ' ');
  if (/%(?![0-9A-Fa-f]{2})/.test(text)) {
    throw new InvalidRequestError('The query string has a malformed percent-encoding.');
  }
  const bytes: number[] = [];
  for (let index = 0; index < text.length; index++) {
    if (text[index] === '%') {
      bytes.push(Number.parseInt(text.slice(index + 1, index + 3), 16));
      index += 2;
    } else {
      bytes.push(text.charCodeAt(index));
    }
  }
  let decoded: string;
  try {
    decoded = UTF8.decode(Uint8Array.from(bytes));
  } catch {
    throw new InvalidRequestError('The query string is not valid UTF-8.');
  }
  // \p{Cc}: C0 controls (NUL, CR, LF, TAB, ...), DEL and C1 controls.
  if (/\p{Cc}/u.test(decoded)) {
    throw new InvalidRequestError('The query string holds control characters.');
  }
  return decoded;
}
