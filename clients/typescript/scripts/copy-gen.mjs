// Copies the generated code of the contract (gen/ts at the repository root,
// written by `make generate`) into src/gen, so the package compiles and
// ships it with its own dependencies. src/gen is a build artifact.
import { cpSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const from = join(root, "..", "..", "gen", "ts");
const to = join(root, "src", "gen");
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
