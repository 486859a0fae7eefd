import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LOCAL_AWS } from './aws';
import { LOCAL_ACCOUNT } from './aws-calls';

/**
 * A loopback server answering SSM GetParameter and Secrets Manager GetSecretValue (AWS JSON protocol), with the ARNs
 * the real stores return: a secret's ARN ends in '-' and six random characters.
 */
export interface CredentialStores {
  url: string;
  secretArn(name: string): string;
  close(): Promise<void>;
}

export async function startCredentialStores(
  parameters: Record<string, string>,
  secrets: Record<string, string>,
): Promise<CredentialStores> {
  const region = LOCAL_AWS.region;
  const secretArn = (name: string) => `arn:aws:secretsmanager:${region}:${LOCAL_ACCOUNT}:secret:${name}-AbC123`;
  const reply = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
    res.end(JSON.stringify(body));
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, string>;
    const target = String(req.headers['x-amz-target']);
    if (target === 'AmazonSSM.GetParameter' && body.Name! in parameters) {
      const arn = `arn:aws:ssm:${region}:${LOCAL_ACCOUNT}:parameter/${body.Name!.replace(/^\//, '')}`;
      return reply(res, 200, {
        Parameter: { Name: body.Name, ARN: arn, Type: 'SecureString', Value: parameters[body.Name!], Version: 1 },
      });
    }
    if (target === 'secretsmanager.GetSecretValue') {
      // A secret is named by its name, its full ARN or its ARN without the suffix.
      const name = Object.keys(secrets).find((n) =>
        [n, secretArn(n), secretArn(n).slice(0, -7)].includes(body.SecretId!),
      );
      if (name)
        return reply(res, 200, { ARN: secretArn(name), Name: name, VersionId: 'v1', SecretString: secrets[name] });
    }
    reply(res, 400, { __type: 'ResourceNotFoundException', message: `${target} ${JSON.stringify(body)}` });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => reply(res, 500, { __type: 'InternalError', message: String(error) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    secretArn,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
