import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { ClientCredentialsToken } from '../../../lib/subscription/oauth';
import { listenForTest } from '../../support/endpoints';

// Found by the contract fuzz (seed 2, path 2:37): an invocation whose deadline cut its token request held every
// request of the next invocations back for 5 s, though the token endpoint was fine.
describe('ClientCredentialsToken after an invocation whose deadline cut the token request', () => {
  it('asks the token endpoint again at the next invocation: our own abort is not the token endpoint failing', async () => {
    let requests = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        requests++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: `tok-${requests}`, token_type: 'Bearer', expires_in: 3600 }));
      });
    });
    const url = new URL((await listenForTest(server)).replace('/events', '/oauth2/token'));
    const source = new ClientCredentialsToken({ endpoint: 'crm', tokenUrl: url, clientId: 'ingest', timeoutMs: 5000 });

    const deadline = new AbortController();
    deadline.abort();
    await expect(source.get('s3cr3t', deadline.signal)).rejects.toThrow(/OAuth token request to .* failed/);

    await expect(source.get('s3cr3t', new AbortController().signal)).resolves.toMatch(/^tok-/);
  });
});
