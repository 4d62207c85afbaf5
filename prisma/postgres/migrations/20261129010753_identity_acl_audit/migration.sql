-- DropForeignKey
ALTER TABLE "t_agent_session" DROP CONSTRAINT "t_agent_session_agent_id_fkey";

-- AlterTable
ALTER TABLE "t_agent" DROP COLUMN "registered_at",
ADD COLUMN     "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
ADD COLUMN     "created_by" TEXT NOT NULL DEFAULT '',
ADD COLUMN     "enrolled_at" TIMESTAMP(3),
ADD COLUMN     "labels" TEXT NOT NULL DEFAULT '{}',
ADD COLUMN     "revoked_at" TIMESTAMP(3),
ALTER COLUMN "last_seen_at" DROP NOT NULL,
ALTER COLUMN "last_seen_at" DROP DEFAULT;

-- DropTable
DROP TABLE "t_agent_session";

-- CreateTable
CREATE TABLE "t_agent_credential" (
    "secret_hash" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revoked_at" TIMESTAMP(3),

    CONSTRAINT "t_agent_credential_pkey" PRIMARY KEY ("secret_hash")
);

-- CreateTable
CREATE TABLE "t_enrollment_token" (
    "token_hash" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMP(3) NOT NULL,
    "used_at" TIMESTAMP(3),

    CONSTRAINT "t_enrollment_token_pkey" PRIMARY KEY ("token_hash")
);

-- CreateTable
CREATE TABLE "t_admin_token" (
    "token_hash" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "created_by" TEXT NOT NULL DEFAULT '',
    "revoked_at" TIMESTAMP(3),
    "last_used_at" TIMESTAMP(3),

    CONSTRAINT "t_admin_token_pkey" PRIMARY KEY ("token_hash")
);

-- CreateTable
CREATE TABLE "t_acl_grant" (
    "id" TEXT NOT NULL,
    "subject" TEXT NOT NULL,
    "plugin_pattern" TEXT NOT NULL,
    "version_range" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "created_by" TEXT NOT NULL DEFAULT '',

    CONSTRAINT "t_acl_grant_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "t_audit_event" (
    "seq" SERIAL NOT NULL,
    "time" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "subject" TEXT NOT NULL DEFAULT '',
    "outcome" TEXT NOT NULL,
    "reason" TEXT NOT NULL DEFAULT '',
    "source" TEXT NOT NULL DEFAULT '',
    "details" TEXT NOT NULL DEFAULT '{}',

    CONSTRAINT "t_audit_event_pkey" PRIMARY KEY ("seq")
);

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

-- AddForeignKey
ALTER TABLE "t_agent_credential" ADD CONSTRAINT "t_agent_credential_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "t_agent"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "t_enrollment_token" ADD CONSTRAINT "t_enrollment_token_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "t_agent"("id") ON DELETE CASCADE ON UPDATE CASCADE;
