import { randomBytes } from 'node:crypto';
import { codeChallengeS256, newCodeVerifier } from '../../functions/broker/pkce.ts';

/** The app registration a test passes as `CLIENT_APPS` to use {@link handoffLogin}. */
export const TEST_APP = { client_id: 'client-tests', redirect_uris: ['http://127.0.0.1/callback'] };

/**
 * A registered app's login against a running broker whose Salesforce is the mock org, as
 * a person would click it: `/login?client_id...`, "Allow" on the org's login page (its form
 * posts the authorize parameters back), `/callback`, then `POST /token` with the verifier.
 * Returns the bearer session handle, and a way to present the spent code again.
 */
export async function handoffLogin(
  brokerUrl: string,
): Promise<{ handle: string; connectionId: string; replayCode: () => Promise<Response> }> {
  const verifier = newCodeVerifier();
  const state = randomBytes(16).toString('base64url');
  const redirectUri = 'http://127.0.0.1:8123/callback';
  const login = await fetch(
    `${brokerUrl}/login?${new URLSearchParams({
      client_id: TEST_APP.client_id,
      redirect_uri: redirectUri,
      state,
      code_challenge: codeChallengeS256(verifier),
      code_challenge_method: 'S256',
    })}`,
    { redirect: 'manual' },
  );
  const loginCookie = (login.headers.getSetCookie()[0] ?? '').split(';')[0] ?? '';
  const authorize = new URL(login.headers.get('location') ?? '');
  const form = new URLSearchParams(authorize.searchParams);
  form.set('decision', 'allow');
  const allowed = await fetch(`${authorize.origin}${authorize.pathname}`, {
    method: 'POST',
    body: form,
    redirect: 'manual',
  });
  const callback = new URL(allowed.headers.get('location') ?? '');
  const handedOver = await fetch(`${brokerUrl}${callback.pathname}${callback.search}`, {
    redirect: 'manual',
    headers: { cookie: loginCookie },
  });
  const code = new URL(handedOver.headers.get('location') ?? '').searchParams.get('code') ?? '';
  const redeemed = await fetch(`${brokerUrl}/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      client_id: TEST_APP.client_id,
      code_verifier: verifier,
    }),
  });
  const body = (await redeemed.json()) as { session_handle?: string; connection_id?: string };
  if (!redeemed.ok || !body.session_handle) {
    throw new Error(`the handoff failed: /token answered ${redeemed.status}`);
  }
  return {
    handle: body.session_handle,
    connectionId: String(body.connection_id),
    /** Presents the spent broker code again, exactly as the first time. */
    replayCode: () =>
      fetch(`${brokerUrl}/token`, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code,
          redirect_uri: redirectUri,
          client_id: TEST_APP.client_id,
          code_verifier: verifier,
        }),
      }),
  };
}
