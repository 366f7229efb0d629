/**
 * Pure URL predicates shared by the runtime configuration, the Salesforce client and the
 * CDK settings. No imports: every side may depend on this module.
 */

/** Loopback hosts (`localhost`, 127.0.0.0/8, `[::1]`), where plain http is acceptable. */
export function isLoopbackUrl(url: URL): boolean {
  const host = url.hostname;
  return host === 'localhost' || host === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(host);
}
