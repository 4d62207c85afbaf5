-- DropIndex
DROP INDEX "t_agent_session_agent_id_idx";

-- DropTable
PRAGMA foreign_keys=off;
DROP TABLE "t_agent_session";
PRAGMA foreign_keys=on;

-- CreateTable
CREATE TABLE "t_agent_credential" (
    "secret_hash" TEXT NOT NULL PRIMARY KEY,
    "agent_id" TEXT NOT NULL,
    "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revoked_at" DATETIME,
    CONSTRAINT "t_agent_credential_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "t_agent" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "t_enrollment_token" (
    "token_hash" TEXT NOT NULL PRIMARY KEY,
    "agent_id" TEXT NOT NULL,
    "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" DATETIME NOT NULL,
    "used_at" DATETIME,
    CONSTRAINT "t_enrollment_token_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "t_agent" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "t_admin_token" (
    "token_hash" TEXT NOT NULL PRIMARY KEY,
    "name" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "created_by" TEXT NOT NULL DEFAULT '',
    "revoked_at" DATETIME,
    "last_used_at" DATETIME
);

-- CreateTable
CREATE TABLE "t_acl_grant" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "subject" TEXT NOT NULL,
    "plugin_pattern" TEXT NOT NULL,
    "version_range" TEXT,
    "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "created_by" TEXT NOT NULL DEFAULT ''
);

-- CreateTable
CREATE TABLE "t_audit_event" (
    "seq" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "time" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "subject" TEXT NOT NULL DEFAULT '',
    "outcome" TEXT NOT NULL,
    "reason" TEXT NOT NULL DEFAULT '',
    "source" TEXT NOT NULL DEFAULT '',
    "details" TEXT NOT NULL DEFAULT '{}'
);

-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_t_agent" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "labels" TEXT NOT NULL DEFAULT '{}',
    "hostname" TEXT NOT NULL DEFAULT '',
    "agent_version" TEXT NOT NULL DEFAULT '',
    "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "created_by" TEXT NOT NULL DEFAULT '',
    "enrolled_at" DATETIME,
    "revoked_at" DATETIME,
    "last_seen_at" DATETIME
);
INSERT INTO "new_t_agent" ("agent_version", "hostname", "id", "last_seen_at") SELECT "agent_version", "hostname", "id", "last_seen_at" FROM "t_agent";
DROP TABLE "t_agent";
ALTER TABLE "new_t_agent" RENAME TO "t_agent";
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

-- CreateIndex
CREATE INDEX "t_agent_credential_agent_id_idx" ON "t_agent_credential"("agent_id");

-- CreateIndex
CREATE INDEX "t_enrollment_token_agent_id_idx" ON "t_enrollment_token"("agent_id");

-- CreateIndex
CREATE INDEX "t_acl_grant_plugin_pattern_idx" ON "t_acl_grant"("plugin_pattern");

-- CreateIndex
CREATE INDEX "t_audit_event_time_idx" ON "t_audit_event"("time");

-- CreateIndex
CREATE INDEX "t_audit_event_actor_idx" ON "t_audit_event"("actor");

-- CreateIndex
CREATE INDEX "t_audit_event_action_idx" ON "t_audit_event"("action");
