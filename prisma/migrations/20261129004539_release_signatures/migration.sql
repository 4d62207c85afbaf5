-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_t_plugin" (
    "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "plugin_id" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "sha256" TEXT NOT NULL,
    "size" INTEGER NOT NULL,
    "storage_key" TEXT NOT NULL,
    "statement" TEXT NOT NULL DEFAULT '',
    "openpgp_signatures" TEXT NOT NULL DEFAULT '[]',
    "sigstore_bundles" TEXT NOT NULL DEFAULT '[]',
    "signers" TEXT NOT NULL DEFAULT '[]',
    "published_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "yanked_at" DATETIME
);
INSERT INTO "new_t_plugin" ("id", "plugin_id", "published_at", "sha256", "size", "storage_key", "version", "yanked_at") SELECT "id", "plugin_id", "published_at", "sha256", "size", "storage_key", "version", "yanked_at" FROM "t_plugin";
DROP TABLE "t_plugin";
ALTER TABLE "new_t_plugin" RENAME TO "t_plugin";
CREATE INDEX "t_plugin_sha256_idx" ON "t_plugin"("sha256");
CREATE UNIQUE INDEX "t_plugin_plugin_id_version_key" ON "t_plugin"("plugin_id", "version");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;
