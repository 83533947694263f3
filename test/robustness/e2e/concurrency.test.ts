/**
 * Eight clients at once against one dev server: four skopeo pushes of images that share layers
 * (two of them into one repository) while four others pull images pushed before. Every image
 * then pulls back with every digest unchanged.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Skopeo } from "../../e2e/lib/clients.ts";
import { startDevServer, type RunningDevServer } from "../../e2e/lib/dev-server.ts";
import { writeOciLayout, type BuiltImage } from "../../e2e/lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "../../e2e/lib/processes.ts";
import { pullAndVerify, push, sharedLayerImages } from "./lib.ts";

describe("eight clients at once", () => {
  let server: RunningDevServer | undefined;
  let work: string | undefined;
  let images: BuiltImage[];
  let layout: string;
  const repoOf = (i: number) => (i === 5 ? "conc/shared" : i === 4 ? "conc/shared" : `conc/app-${i}`);
  const tagOf = (i: number) => `v${i}`;

  beforeAll(async () => {
    work = makeTempDir("robust-conc");
    images = sharedLayerImages("conc", 8);
    layout = join(work, "layout");
    writeOciLayout(layout, images.map((artifact, i) => ({ tag: tagOf(i), artifact })));
    server = await startDevServer();
    // Images 0-3 are there before the rush; 4-7 are pushed during it.
    const skopeo = new Skopeo(join(work, "skopeo-setup"));
    for (let i = 0; i < 4; i++) await push(skopeo, server, layout, tagOf(i), repoOf(i));
  });
  afterAll(() => cleanupAll([() => server?.stop(), () => removeTempDir(work)]));

  it("pushes four images and pulls four others at the same time, all intact", async () => {
    const s = server!;
    const clients = Array.from({ length: 8 }, (_, i) => new Skopeo(join(work!, `skopeo-${i}`)));
    await Promise.all([
      ...[4, 5, 6, 7].map((i) => push(clients[i]!, s, layout, tagOf(i), repoOf(i))),
      ...[0, 1, 2, 3].map((i) => pullAndVerify(clients[i]!, s, repoOf(i), tagOf(i), images[i]!, work!)),
    ]);
    const verifier = new Skopeo(join(work!, "skopeo-verify"));
    for (let i = 0; i < 8; i++) await pullAndVerify(verifier, s, repoOf(i), tagOf(i), images[i]!, work!);
  });
});
