/** HTML of the fake Salesforce login/consent page, its error page and the maintenance page. */

export function escapeHtml(value: string): string {
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

export const PAGE_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'";

const STYLE = `
  body { font-family: system-ui, sans-serif; background: #f3f3f3; margin: 0; }
  main { max-width: 26rem; margin: 4rem auto; background: #fff; border-radius: .5rem;
         padding: 2rem; box-shadow: 0 2px 8px rgba(0,0,0,.1); }
  h1 { font-size: 1.3rem; margin-top: 0; color: #032d60; }
  label { display: block; margin: 1rem 0 .25rem; font-weight: 600; }
  input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .5rem; }
  ul { padding-left: 1.2rem; }
  .buttons { display: flex; flex-direction: row-reverse; gap: 1rem; margin-top: 1.5rem; }
  button { flex: 1; padding: .6rem; font-size: 1rem; border-radius: .25rem; cursor: pointer; }
  #allow { background: #0176d3; color: #fff; border: 1px solid #0176d3; }
  #deny { background: #fff; color: #0176d3; border: 1px solid #c9c9c9; }
  .meta { color: #706e6b; font-size: .8rem; margin-top: 1.5rem; }
`;

function layout(title: string, content: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${content}
</main>
</body>
</html>
`;
}

export interface LoginPageInput {
  action: string;
  username: string;
  orgId: string;
  scopes: string[];
  /** The authorize parameters to carry through the form as hidden fields. */
  hidden: [string, string][];
}

export function loginPage(input: LoginPageInput): string {
  const hidden = input.hidden
    .map(
      ([name, value]) =>
        `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`,
    )
    .join('\n');
  const scopes = input.scopes.map((s) => `<li>${escapeHtml(s)}</li>`).join('');
  return layout(
    'Login | Salesforce (fake)',
    `<h1>Log in to Salesforce (fake org)</h1>
<form method="POST" action="${escapeHtml(input.action)}">
${hidden}
<label for="username">Username</label>
<input type="text" id="username" name="username" value="${escapeHtml(input.username)}" autocomplete="username">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" placeholder="any password">
<p>The app is asking for access to:</p>
<ul>${scopes || '<li>(default scopes)</li>'}</ul>
<!-- Allow comes first so that Enter in a text field submits Allow. -->
<div class="buttons">
<button type="submit" id="allow" name="decision" value="allow">Allow</button>
<button type="submit" id="deny" name="decision" value="deny">Deny</button>
</div>
</form>
<p class="meta">Organization ${escapeHtml(input.orgId)}</p>`,
  );
}

export function errorPage(error: string, description: string): string {
  return layout(
    'Error | Salesforce (fake)',
    `<h1>OAuth Error</h1>
<p>We can't authorize you because of an OAuth error. For more information, contact your Salesforce administrator.</p>
<p id="error">error=${escapeHtml(error)}</p>
<p id="error_description">error_description=${escapeHtml(description)}</p>`,
  );
}

export function maintenancePage(): string {
  return layout(
    'Salesforce - Down for Maintenance',
    `<h1>Down for Maintenance</h1>
<p>Salesforce is temporarily unavailable for scheduled maintenance. We apologize for the
inconvenience. Please check back soon.</p>`,
  );
}
