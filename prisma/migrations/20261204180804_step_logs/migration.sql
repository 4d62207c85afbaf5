-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_t_job_plugin" (
    "id" TEXT NOT NULL PRIMARY KEY,
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
    "logs" TEXT NOT NULL DEFAULT '[]',
    "started_at" DATETIME,
    "completed_at" DATETIME,
    "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "t_job_plugin_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "t_job" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_t_job_plugin" ("completed_at", "created_at", "error_code", "error_message", "execution_order", "execution_stage", "id", "job_id", "plugin_config", "plugin_id", "result", "started_at", "status", "version") SELECT "completed_at", "created_at", "error_code", "error_message", "execution_order", "execution_stage", "id", "job_id", "plugin_config", "plugin_id", "result", "started_at", "status", "version" FROM "t_job_plugin";
DROP TABLE "t_job_plugin";
ALTER TABLE "new_t_job_plugin" RENAME TO "t_job_plugin";
CREATE INDEX "t_job_plugin_job_id_idx" ON "t_job_plugin"("job_id");
CREATE INDEX "t_job_plugin_plugin_id_idx" ON "t_job_plugin"("plugin_id");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;
