// Runs the graphql-http server audit suite (GraphQL over HTTP conformance) against a server.
// Usage: node audit-http.mjs URL. Headers for every request (the caller's token and purpose):
// the JSON object in KETENPOORT_AUDIT_HEADERS; an audit's own headers win over them.
// Output: one JSON object per audit and line ({id, name, status[, reason, httpStatus, body]}).
// Exit 0 only when every audit passes: MUST, SHOULD and MAY alike.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit-http.mjs URL');
  process.exit(2);
}
const extra = JSON.parse(process.env.KETENPOORT_AUDIT_HEADERS ?? '{}');

async function fetchWithHeaders(input, init = {}) {
  const headers = new Headers(init.headers ?? {});
  for (const [name, value] of Object.entries(extra)) {
    if (!headers.has(name)) headers.set(name, value);
  }
  return fetch(input, { ...init, headers, signal: AbortSignal.timeout(10_000) });
}

const audits = serverAudits({ url, fetchFn: fetchWithHeaders });
let failed = 0;
for (const audit of audits) {
  const result = await audit.fn();
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    failed += 1;
    line.reason = result.reason;
    line.httpStatus = result.response.status;
    line.contentType = result.response.headers.get('content-type');
    try {
      line.body = (await result.response.text()).slice(0, 500);
    } catch {
      line.body = null;
    }
  }
  console.log(JSON.stringify(line));
}
console.error(`${audits.length - failed}/${audits.length} audits pass`);
process.exit(failed ? 1 : 0);
