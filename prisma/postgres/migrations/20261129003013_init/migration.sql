-- CreateTable
CREATE TABLE "t_plugin" (
    "id" SERIAL NOT NULL,
    "plugin_id" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "sha256" TEXT NOT NULL,
    "size" INTEGER NOT NULL,
    "storage_key" TEXT NOT NULL,
    "published_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "yanked_at" TIMESTAMP(3),

    CONSTRAINT "t_plugin_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "t_agent" (
    "id" TEXT NOT NULL,
    "hostname" TEXT NOT NULL DEFAULT '',
    "agent_version" TEXT NOT NULL DEFAULT '',
    "registered_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_seen_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "t_agent_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "t_agent_session" (
    "token_hash" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "t_agent_session_pkey" PRIMARY KEY ("token_hash")
);

-- CreateTable
CREATE TABLE "t_agent_plugin" (
    "agent_id" TEXT NOT NULL,
    "plugin_id" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "sha256" TEXT NOT NULL,
    "reported_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "t_agent_plugin_pkey" PRIMARY KEY ("agent_id","plugin_id","version")
);

-- CreateTable
CREATE TABLE "t_job" (
    "id" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'pending',
    "target_agent_id" TEXT,
    "assigned_agent_id" TEXT,
    "commands" TEXT NOT NULL,
    "timeout_seconds" INTEGER NOT NULL DEFAULT 3600,
    "exit_code" INTEGER,
    "output" TEXT NOT NULL DEFAULT '',
    "error_code" TEXT,
    "error_message" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "assigned_at" TIMESTAMP(3),
    "started_at" TIMESTAMP(3),
    "completed_at" TIMESTAMP(3),

    CONSTRAINT "t_job_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "t_job_plugin" (
    "id" TEXT NOT NULL,
    "job_id" TEXT NOT NULL,
    "plugin_id" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "plugin_config" TEXT NOT NULL DEFAULT '{}',
    "execution_order" INTEGER NOT NULL,
    "execution_stage" TEXT NOT NULL,
    "status" INTEGER NOT NULL DEFAULT 0,
    "result" TEXT,
    "error_code" TEXT,
    "error_message" TEXT,
    "started_at" TIMESTAMP(3),
    "completed_at" TIMESTAMP(3),
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "t_job_plugin_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "t_plugin_sha256_idx" ON "t_plugin"("sha256");

-- CreateIndex
CREATE UNIQUE INDEX "t_plugin_plugin_id_version_key" ON "t_plugin"("plugin_id", "version");

-- CreateIndex
CREATE INDEX "t_agent_session_agent_id_idx" ON "t_agent_session"("agent_id");

-- CreateIndex
CREATE INDEX "t_job_status_created_at_idx" ON "t_job"("status", "created_at");

-- CreateIndex
CREATE INDEX "t_job_plugin_job_id_idx" ON "t_job_plugin"("job_id");

-- CreateIndex
CREATE INDEX "t_job_plugin_plugin_id_idx" ON "t_job_plugin"("plugin_id");

-- AddForeignKey
ALTER TABLE "t_agent_session" ADD CONSTRAINT "t_agent_session_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "t_agent"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "t_agent_plugin" ADD CONSTRAINT "t_agent_plugin_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "t_agent"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "t_job_plugin" ADD CONSTRAINT "t_job_plugin_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "t_job"("id") ON DELETE CASCADE ON UPDATE CASCADE;
