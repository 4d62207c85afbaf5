// Runs in every test worker before its tests (vitest.config.ts setupFiles).
import { silenceIpServernameWarning } from "../../proto/warnings.js";

silenceIpServernameWarning();
