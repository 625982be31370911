/**
 * A throwaway self-signed certificate for TLS tests (`openssl`, valid for localhost and
 * 127.0.0.1, two days).
 *
 * @module
 */

/**
 * Writes `key.pem` and `cert.pem` into `dir`.
 *
 * @example
 * ```ts ignore
 * await makeCertificate(dir);
 * ```
 */
export async function makeCertificate(dir: string): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args: ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
      .concat(["-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-subj", "/CN=localhost"])
      .concat(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]),
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`Cannot make a test certificate: ${new TextDecoder().decode(out.stderr)}`);
  }
}
