-- AlterTable
ALTER TABLE "t_plugin" ADD COLUMN     "openpgp_signatures" TEXT NOT NULL DEFAULT '[]',
ADD COLUMN     "signers" TEXT NOT NULL DEFAULT '[]',
ADD COLUMN     "sigstore_bundles" TEXT NOT NULL DEFAULT '[]',
ADD COLUMN     "statement" TEXT NOT NULL DEFAULT '';
