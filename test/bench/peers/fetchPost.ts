import { CONTENT_TYPE } from './runner';

/** One POST with the global fetch; true on 2xx. */
export async function fetchPost(url: string, body: string): Promise<boolean> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': CONTENT_TYPE }, body });
  // Reading the body releases the connection; a naive handler that skipped it would be slower still.
  await res.arrayBuffer();
  return res.ok;
}
