import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';

// biome-ignore lint/suspicious/noExplicitAny: an OpenAPI document is walked generically
type Node = any;

const document: Node = parse(
  readFileSync(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8'),
);
/**
 * Validators for the `format`s the document uses. Ajv ships none (ajv-formats is a separate
 * package), and an unknown format would be ignored with a warning, i.e. not checked.
 */
export const FORMATS: Readonly<Record<string, (value: string) => boolean>> = {
  // RFC 3986 absolute URI: a scheme, then something a URL parser accepts; no spaces.
  uri: (value) => /^[a-z][a-z0-9+.-]*:[^\s]+$/i.test(value) && URL.canParse(value),
  // RFC 3339 date-time in UTC as `Date.prototype.toISOString` writes it.
  'date-time': (value) =>
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/.test(value) &&
    !Number.isNaN(Date.parse(value)),
};

function formatsUsed(node: Node, found = new Set<string>()): Set<string> {
  if (Array.isArray(node)) for (const item of node) formatsUsed(item, found);
  else if (node && typeof node === 'object') {
    if (typeof node.format === 'string' && typeof node.type === 'string') found.add(node.format);
    for (const value of Object.values(node)) formatsUsed(value, found);
  }
  return found;
}

const unchecked = [...formatsUsed(document)].filter((format) => !(format in FORMATS));
if (unchecked.length > 0) {
  throw new Error(`docs/openapi.yaml uses formats with no validator here: ${unchecked.join(', ')}`);
}

const ajv = new Ajv2020({ strict: false, allErrors: true, formats: FORMATS });
ajv.addSchema({ $id: 'openapi', components: document.components }, 'openapi');

function resolve(node: Node): Node {
  if (node && typeof node === 'object' && typeof node.$ref === 'string') {
    const path = node.$ref.replace(/^#\//, '').split('/');
    return resolve(path.reduce((value: Node, key: string) => value?.[key], document));
  }
  return node;
}

/** Rewrites local `$ref`s so Ajv resolves them inside the registered document. */
function schemaOf(schema: Node): Node {
  return JSON.parse(JSON.stringify(schema).replaceAll('"$ref":"#/', '"$ref":"openapi#/'));
}

/**
 * Checks a real response against `docs/openapi.yaml`: the status is documented for the
 * operation, required headers are present and valid, and a JSON body matches its schema.
 * Returns the problems found (empty when the response conforms).
 */
export async function openApiProblems(
  method: string,
  path: string,
  response: Response,
): Promise<string[]> {
  const operation = resolve(document.paths?.[path]?.[method.toLowerCase()]);
  if (!operation) return [`${method} ${path} is not in the document`];
  const spec = resolve(operation.responses?.[String(response.status)]);
  if (!spec) return [`${method} ${path}: status ${response.status} is not documented`];
  const problems: string[] = [];
  for (const [name, header] of Object.entries<Node>(spec.headers ?? {})) {
    const definition = resolve(header);
    const value = response.headers.get(name);
    if (value === null) {
      if (definition.required) problems.push(`header ${name} is missing`);
      continue;
    }
    const validate = ajv.compile(schemaOf(definition.schema ?? {}));
    if (!validate(value))
      problems.push(`header ${name}=${value}: ${ajv.errorsText(validate.errors)}`);
  }
  const text = await response.clone().text();
  const media = spec.content?.['application/json'];
  if (media) {
    if (!(response.headers.get('content-type') ?? '').startsWith('application/json')) {
      problems.push(`content-type ${response.headers.get('content-type')} is not JSON`);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return [...problems, 'body is not JSON'];
    }
    const validate = ajv.compile(schemaOf(media.schema));
    if (!validate(body)) problems.push(`body: ${ajv.errorsText(validate.errors)}`);
  } else if (text.length > 0) {
    problems.push(`status ${response.status} documents no body but got ${text.length} bytes`);
  }
  return problems;
}
