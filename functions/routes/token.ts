import type { BrokerConfig } from '../broker/config.ts';
import { InvalidRequestError } from '../broker/errors.ts';
import { type RedeemDependencies, redeemBrokerCode, type TokenRequest } from '../broker/handoff.ts';
import { parseQuery, type QueryParameters } from '../http/query.ts';
import { json } from '../http/responses.ts';
import { defineRoute, type FlushableMetrics, type HttpHandler } from '../http/route.ts';

export interface TokenRouteDependencies extends Omit<RedeemDependencies, 'config'> {
  config: Pick<BrokerConfig, 'clientApps' | 'invocationDeadlineMs'>;
  metrics: FlushableMetrics;
}

/**
 * `POST /token` (README "Native, desktop and server-side apps"): a registered app redeems
 * the one-time broker code from its redirect for the session handle, proving with its PKCE
 * `code_verifier` that it started the login. The body is
 * `application/x-www-form-urlencoded` (RFC 6749 s4.1.3), parsed strictly; every error is
 * RFC 6749 s5.2 JSON with `Cache-Control: no-store`. Not for browsers: no CORS.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.3
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.2
 */
export function createTokenHandler(deps: TokenRouteDependencies): HttpHandler {
  const domain: RedeemDependencies = {
    ...deps,
    config: {
      clientApps: deps.config.clientApps,
      invocationDeadlineMs: deps.config.invocationDeadlineMs,
    },
  };
  return defineRoute(deps, {
    name: 'token',
    methods: ['POST'],
    handle: async (request, log) => {
      const tokenRequest = parseTokenForm(request.headers['content-type'], request.body);
      const handedOver = await redeemBrokerCode({ ...domain, log }, tokenRequest);
      return json(200, {
        session_handle: handedOver.handle,
        connection_id: handedOver.connectionId,
        token_type: 'Bearer',
      });
    },
  });
}

const TOKEN_PARAMETERS = ['grant_type', 'code', 'redirect_uri', 'client_id', 'code_verifier'];

/**
 * The `/token` form: `application/x-www-form-urlencoded` (a `charset` parameter, if any,
 * must be UTF-8), parsed with the query parser's strictness (bad percent-encoding, invalid
 * UTF-8, control characters, over 2 KB a value: `invalid_request`). Each parameter at most
 * once (RFC 6749 s3.2), all five present and non-empty; unknown ones are ignored (RFC 6749
 * s3.2). A malformed `code_verifier` is `invalid_request` here; a malformed code is
 * an unknown one (`invalid_grant`), decided by the domain.
 */
export function parseTokenForm(
  contentType: string | undefined,
  body: string | undefined,
): TokenRequest {
  if (!isFormContentType(contentType)) {
    throw new InvalidRequestError(
      'The body must be application/x-www-form-urlencoded (RFC 6749 s4.1.3).',
    );
  }
  const form: QueryParameters = parseQuery(body ?? '');
  const value = (name: string): string => {
    const values = form.get(name);
    if (values === undefined || values[0] === '') {
      throw new InvalidRequestError(`The parameter "${name}" is required.`);
    }
    if (values.length !== 1) {
      throw new InvalidRequestError(`The parameter "${name}" must appear at most once.`);
    }
    return values[0] as string;
  };
  // Duplicates of any parameter first: a repeated one is ambiguous whatever else is missing.
  for (const name of TOKEN_PARAMETERS) {
    if ((form.get(name)?.length ?? 0) > 1) {
      throw new InvalidRequestError(`The parameter "${name}" must appear at most once.`);
    }
  }
  const grantType = value('grant_type');
  const request: TokenRequest = {
    grantType,
    code: value('code'),
    redirectUri: value('redirect_uri'),
    clientId: value('client_id'),
    codeVerifier: value('code_verifier'),
  };
  if (!/^[A-Za-z0-9._~-]{43,128}$/.test(request.codeVerifier)) {
    throw new InvalidRequestError(
      '"code_verifier" must be 43 to 128 characters from A-Z, a-z, 0-9, "-", ".", "_", "~".',
    );
  }
  return request;
}

function isFormContentType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const [type, ...parameters] = contentType.split(';').map((part) => part.trim().toLowerCase());
  if (type !== 'application/x-www-form-urlencoded') return false;
  return parameters.every((parameter) => {
    const [name, raw] = parameter.split('=', 2);
    if (name !== 'charset') return parameter === '';
    const charset = (raw ?? '').replace(/^"(.*)"$/, '$1');
    return charset === 'utf-8' || charset === 'utf8';
  });
}
