/**
 * A browser's login against a broker served by `npm start` (the org auto-approves):
 * `/login`, the org's authorize redirect, `/callback` with the login cookie (and the
 * session cookie of an earlier login, when given, which the new one replaces), then
 * `/session` for the connection id.
 */
export async function browserLogin(
  base: string,
  previousHandle?: string,
): Promise<{ handle: string; connectionId: string; organizationId: string; userId: string }> {
  const login = await fetch(`${base}/login`, { redirect: 'manual' });
  const loginCookie = (login.headers.getSetCookie()[0] ?? '').split(';')[0] ?? '';
  const authorize = await fetch(login.headers.get('location') ?? '', { redirect: 'manual' });
  const callbackUrl = new URL(authorize.headers.get('location') ?? '');
  const cookies = [loginCookie, ...(previousHandle ? [`__Host-tb-session=${previousHandle}`] : [])];
  const callback = await fetch(`${base}${callbackUrl.pathname}${callbackUrl.search}`, {
    redirect: 'manual',
    headers: { cookie: cookies.join('; ') },
  });
  const handle =
    callback.headers
      .getSetCookie()
      .find((cookie) => cookie.startsWith('__Host-tb-session='))
      ?.split(';')[0]
      ?.split('=')[1] ?? '';
  const session = await fetch(`${base}/session`, {
    headers: { authorization: `Bearer ${handle}` },
  });
  const body = (await session.json()) as {
    connection_id: string;
    organization_id: string;
    user_id: string;
  };
  return {
    handle,
    connectionId: body.connection_id,
    organizationId: body.organization_id,
    userId: body.user_id,
  };
}
