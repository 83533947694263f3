/**
 * Self-signed TLS material for local test servers (openssl req -x509), valid for 127.0.0.1 and
 * localhost. Clients are run with their "insecure" switches, so no CA needs to be trusted.
 */
import { join } from "node:path";
import { run } from "./processes.ts";

export interface CertPair {
  certFile: string;
  keyFile: string;
}

export async function generateSelfSignedCert(dir: string, name = "server"): Promise<CertPair> {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  await run(
    "openssl",
    [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes",
      "-days", "2",
      "-subj", "/CN=127.0.0.1",
      "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout", keyFile,
      "-out", certFile,
    ],
    { timeoutMs: 30_000 },
  );
  return { certFile, keyFile };
}
