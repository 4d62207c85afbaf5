// grpc-js passes an IP target (127.0.0.1) as the TLS server name, which Node flags with DEP0123
// on every connection; the certificate is still checked against the IP SAN. Drop just that one
// warning, for every process that opens gRPC clients (the CLI, the agent, the tests).
export function silenceIpServernameWarning(): void {
  const emitWarning = process.emitWarning.bind(process);
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const code = typeof rest[0] === "object" && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
    if (code === "DEP0123") return;
    (emitWarning as (...a: unknown[]) => void)(warning, ...rest);
  }) as typeof process.emitWarning;
}
