/**
 * Images in the local Docker engine: `docker image save -o <temp file> <image>` (the docker CLI
 * honours DOCKER_HOST, DOCKER_CONTEXT and DOCKER_CONFIG as usual), then the archive is read in
 * place like any `docker save` archive, and removed when the push ends.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface SavedArchive {
  path: string;
  remove(): Promise<void>;
}

/** Runs `docker image save` into a temp dir under `tmpDir`. */
export async function saveFromDocker(image: string, opts: { tmpDir?: string; dockerCli?: string; log?: (m: string) => void }): Promise<SavedArchive> {
  const dir = mkdtempSync(join(opts.tmpDir ?? tmpdir(), "push-docker-"));
  const remove = async () => rmSync(dir, { recursive: true, force: true });
  const path = join(dir, "image.tar");
  const cli = opts.dockerCli ?? "docker";
  const host = process.env.DOCKER_HOST ? ` (DOCKER_HOST=${process.env.DOCKER_HOST})` : "";
  opts.log?.(`saving ${image} from the docker engine${host}…`);
  const onSignal = () => rmSync(dir, { recursive: true, force: true });
  process.once("exit", onSignal);
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(cli, ["image", "save", "-o", path, image], { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (b: Buffer) => {
        if (stderr.length < 10_000) stderr += b.toString("utf8");
      });
      child.on("error", (err) =>
        reject(new Error(`could not run \`${cli}\`: ${err.message}${(err as NodeJS.ErrnoException).code === "ENOENT" ? " (is the docker CLI installed and on PATH?)" : ""}`)),
      );
      child.on("close", (code, signal) => {
        if (code === 0) resolve();
        else reject(new Error(`\`${cli} image save ${image}\`${host} failed (${signal ?? `exit code ${code}`}): ${stderr.trim() || "no output"}`));
      });
    });
  } catch (err) {
    await remove();
    process.removeListener("exit", onSignal);
    throw err;
  }
  return {
    path,
    remove: async () => {
      process.removeListener("exit", onSignal);
      await remove();
    },
  };
}
