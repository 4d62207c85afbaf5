// `arcade server wait`: block until a server started in the background answers an authenticated
// admin call, so scripts (the quickstart among them) need no sleeps. Only "not up yet" is waited
// out: unreachable, or no admin token written yet. A TLS or credential problem can never fix
// itself by waiting and is reported at once.
import { call, isTransient } from "../proto/rpc.js";
import { ArcadeError, ErrorCode, errorMessageOf, isArcadeError } from "../signing/errors.js";
import { connectAdmin, resolveToken, type ConnectOptions } from "./admin-client.js";

export async function waitForServer(o: ConnectOptions, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = "";
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    let tokenReady = true;
    try {
      resolveToken(o);
    } catch (e) {
      tokenReady = false; // the server writes <data_dir>/admin.token at start
      last = errorMessageOf(e);
    }
    if (tokenReady) {
      const { client, md } = connectAdmin(o);
      try {
        await call(client.listPlugins, client, { pluginId: "" }, md, 5_000);
        return;
      } catch (e) {
        if (!(isArcadeError(e) && isTransient(e))) throw e;
        last = errorMessageOf(e);
      } finally {
        client.close();
      }
    }
    if (Date.now() + delay > until)
      throw new ArcadeError(
        ErrorCode.SERVER_UNAVAILABLE,
        `the server did not answer within ${Math.round(timeoutMs / 1000)} s (is it running? check its log); last: ${last}`,
      );
    await new Promise((r) => setTimeout(r, delay));
  }
}
