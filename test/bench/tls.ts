import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { OUT_DIR } from './paths';

export interface Certificate {
  certFile: string;
  keyFile: string;
}

/**
 * A self-signed ECDSA P-256 certificate for 127.0.0.1 (made once with the openssl CLI, kept in .bench/tls): the https
 * endpoints use it, and the runners trust it through NODE_EXTRA_CA_CERTS. Undefined when openssl is not installed.
 */
export function ensureCertificate(): Certificate | undefined {
  const dir = `${OUT_DIR}/tls`;
  const cert: Certificate = { certFile: `${dir}/cert.pem`, keyFile: `${dir}/key.pem` };
  if (existsSync(cert.certFile) && existsSync(cert.keyFile)) return cert;
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        cert.keyFile,
        '-out',
        cert.certFile,
        '-days',
        '365',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    return cert;
  } catch {
    return undefined;
  }
}
