-- AlterTable
ALTER TABLE "t_job_plugin" ADD COLUMN     "logs" TEXT NOT NULL DEFAULT '[]';
