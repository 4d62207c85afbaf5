// Publishers may sign with gpg 2.2 and operators may check our signatures with it, so both
// directions run against the real CLI. gpg exits 0 even for revoked or expired signers: only its
// --status-fd lines say what it concluded, so every check reads them.

import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as openpgp from "openpgp";
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../signing/errors.js";
import { generateSigningKey, readPublicKeys, readSecretKey, signDetached, verifyDetached } from "../../signing/openpgp.js";
import { gpgVersion, parseGpgStatus, runGpg, withGnupgHome, type GpgStatus } from "./gpg.js";

const STATEMENT = Buffer.from(JSON.stringify({ id: "acme/deploy", version: "1.2.3", sha256: "cd".repeat(32), size: 4096 }));

const version = await gpgVersion();
if (!version) console.warn("gpg is not on PATH: skipping the gpg interop tests (.ci/run installs gnupg)");

const codes = (status: GpgStatus[]) => status.map((s) => s.code);

/** Generates an ed25519 signing key in gpg and returns its fingerprint. */
async function gpgKey(home: string): Promise<string> {
  const res = await runGpg(
    ["--status-fd", "1", "--quick-gen-key", "Gpg Publisher <gpg@acme.example>", "ed25519", "sign", "never"],
    undefined,
    home,
  );
  const created = parseGpgStatus(res.stdout.toString()).find((s) => s.code === "KEY_CREATED");
  expect(created, res.stderr).toBeDefined();
  return created!.args[1]!;
}

async function gpgVerify(home: string, sig: string | Uint8Array, data: Uint8Array): Promise<{ code: number; status: GpgStatus[] }> {
  await writeFile(join(home, "check.sig"), sig);
  await writeFile(join(home, "check.json"), data);
  const res = await runGpg(["--status-fd", "1", "--verify", join(home, "check.sig"), join(home, "check.json")], undefined, home);
  return { code: res.code, status: parseGpgStatus(res.stdout.toString()) };
}

describe("parseGpgStatus", () => {
  it("reads status lines and ignores everything else", () => {
    const text = [
      "gpg: Signature made Sun Nov 29 00:50:32 2026 UTC",
      "[GNUPG:] NEWSIG",
      "[GNUPG:] REVKEYSIG 310BF86D15466993 Gpg User <gpg@example.com>",
      "[GNUPG:] VALIDSIG CABC54A4BAB9253158F81214310BF86D15466993 2026-11-29 1795913432 0 4 0 22 8 00 CABC54A4BAB9253158F81214310BF86D15466993",
      "",
    ].join("\n");
    expect(parseGpgStatus(text)).toEqual([
      { code: "NEWSIG", args: [] },
      { code: "REVKEYSIG", args: ["310BF86D15466993", "Gpg", "User", "<gpg@example.com>"] },
      {
        code: "VALIDSIG",
        args: [
          "CABC54A4BAB9253158F81214310BF86D15466993",
          "2026-11-29",
          "1795913432",
          "0",
          "4",
          "0",
          "22",
          "8",
          "00",
          "CABC54A4BAB9253158F81214310BF86D15466993",
        ],
      },
    ]);
  });
});

describe.skipIf(!version)(`gpg interop (${version ?? "gpg missing"})`, () => {
  it("gpg's armored and binary detached signatures verify with our verifier; tampered data does not", async () => {
    await withGnupgHome(async (home) => {
      const fingerprint = await gpgKey(home);
      const file = join(home, "statement.json");
      await writeFile(file, STATEMENT);
      expect((await runGpg(["--detach-sign", "--armor", "-o", `${file}.asc`, file], undefined, home)).code).toBe(0);
      expect((await runGpg(["--detach-sign", "-o", `${file}.sig`, file], undefined, home)).code).toBe(0);
      const armoredKey = (await runGpg(["--export", "--armor", fingerprint], undefined, home)).stdout.toString();
      const binaryKey = (await runGpg(["--export", fingerprint], undefined, home)).stdout;

      const armoredSig = await readFile(`${file}.asc`, "utf8");
      const binarySig = await readFile(`${file}.sig`);
      expect(armoredSig).toMatch(/^-----BEGIN PGP SIGNATURE-----/);
      for (const keyring of [await readPublicKeys(armoredKey), await readPublicKeys(binaryKey)]) {
        for (const sig of [armoredSig, binarySig, await readFile(`${file}.asc`)]) {
          const signer = await verifyDetached(STATEMENT, sig, keyring);
          expect(signer).toMatchObject({
            fingerprint,
            signingKeyId: fingerprint.slice(-16),
            userIds: ["Gpg Publisher <gpg@acme.example>"],
          });
        }
        const tampered = Buffer.from(STATEMENT.toString().replace("1.2.3", "1.2.4"));
        await expect(verifyDetached(tampered, armoredSig, keyring)).rejects.toMatchObject({ code: ErrorCode.SIGNATURE_INVALID });
        await expect(verifyDetached(tampered, binarySig, keyring)).rejects.toMatchObject({ code: ErrorCode.SIGNATURE_INVALID });
      }
    });
  });

  it("our armored and binary signatures get GOODSIG and VALIDSIG from gpg; tampered data gets BADSIG", async () => {
    await withGnupgHome(async (home) => {
      const gen = await generateSigningKey({ name: "Arcade Publisher", email: "arcade@acme.example" });
      const imported = await runGpg(["--status-fd", "1", "--import"], gen.publicKeyArmored, home);
      expect(codes(parseGpgStatus(imported.stdout.toString()))).toContain("IMPORT_OK");
      const key = await readSecretKey(gen.privateKeyArmored);

      for (const sig of [await signDetached(STATEMENT, key), await signDetached(STATEMENT, key, { armor: false })]) {
        const good = await gpgVerify(home, sig, STATEMENT);
        expect(codes(good.status)).toContain("GOODSIG");
        expect(good.status.find((s) => s.code === "VALIDSIG")?.args[0]).toBe(gen.fingerprint);
        for (const bad of ["BADSIG", "ERRSIG", "REVKEYSIG", "EXPKEYSIG", "EXPSIG"]) expect(codes(good.status)).not.toContain(bad);

        const bad = await gpgVerify(home, sig, Buffer.concat([STATEMENT, Buffer.from("\n")]));
        expect(codes(bad.status)).toContain("BADSIG");
        expect(codes(bad.status)).not.toContain("GOODSIG");
        expect(bad.code).not.toBe(0);
      }
    });
  });

  it("gpg reports the primary fingerprint for a signature from our signing subkey", async () => {
    await withGnupgHome(async (home) => {
      const { privateKey, publicKey } = await openpgp.generateKey({
        userIDs: [{ name: "Sub Signer", email: "sub@acme.example" }],
        subkeys: [{ sign: true }],
        format: "object",
      });
      await runGpg(["--import"], publicKey.armor(), home);
      const { status } = await gpgVerify(home, await signDetached(STATEMENT, privateKey), STATEMENT);
      const validsig = status.find((s) => s.code === "VALIDSIG")!.args;
      expect(validsig[0]).toBe(publicKey.subkeys[0]!.getFingerprint().toUpperCase());
      expect(validsig.at(-1)).toBe(publicKey.getFingerprint().toUpperCase());
      expect(codes(status)).toContain("GOODSIG");
    });
  });

  it("a key revoked in gpg: gpg says REVKEYSIG yet exits 0, and our verifier refuses with KEY_REVOKED", async () => {
    await withGnupgHome(async (home) => {
      const fingerprint = await gpgKey(home);
      const file = join(home, "statement.json");
      await writeFile(file, STATEMENT);
      await runGpg(["--detach-sign", "-o", `${file}.sig`, file], undefined, home);
      const sig = await readFile(`${file}.sig`);
      const beforeRevocation = await readPublicKeys((await runGpg(["--export", "--armor", fingerprint], undefined, home)).stdout);
      await expect(verifyDetached(STATEMENT, sig, beforeRevocation)).resolves.toMatchObject({ fingerprint });

      // gpg 2.2 writes a revocation certificate at key creation, with its armor line prefixed by ":"
      // so it cannot be imported by accident.
      expect(await readdir(join(home, "openpgp-revocs.d"))).toEqual([`${fingerprint}.rev`]);
      const cert = (await readFile(join(home, "openpgp-revocs.d", `${fingerprint}.rev`), "utf8")).replace(/^:-----BEGIN/m, "-----BEGIN");
      const imported = await runGpg(["--status-fd", "1", "--import"], cert, home);
      expect(imported.code, imported.stderr).toBe(0);

      const { code, status } = await gpgVerify(home, sig, STATEMENT);
      expect(code).toBe(0);
      expect(codes(status)).toContain("REVKEYSIG");
      expect(codes(status)).not.toContain("GOODSIG");

      const revoked = await readPublicKeys((await runGpg(["--export", "--armor", fingerprint], undefined, home)).stdout, "gpg export");
      await expect(verifyDetached(STATEMENT, sig, revoked)).rejects.toMatchObject({ code: ErrorCode.KEY_REVOKED });
      // Even next to the stale, unrevoked export: copies of a key are merged, revocations included.
      const both = Buffer.concat([beforeRevocation[0]!.write(), revoked[0]!.write()]);
      await expect(verifyDetached(STATEMENT, sig, await readPublicKeys(both))).rejects.toMatchObject({ code: ErrorCode.KEY_REVOKED });
    });
  });
});
