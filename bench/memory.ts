/**
 * Samples the resident memory of a process tree (e.g. wrangler dev → workerd) while work runs,
 * from /proc, and reports the peak of the processes whose command matches a name.
 */
import { readdirSync, readFileSync } from "node:fs";

function children(): Map<number, number[]> {
  const tree = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = tree.get(ppid) ?? [];
      list.push(Number(entry));
      tree.set(ppid, list);
    } catch {
      // The process ended while we looked.
    }
  }
  return tree;
}

function descendants(root: number): number[] {
  const tree = children();
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(tree.get(out[i]!) ?? []));
  return out;
}

function rssBytes(pid: number): { name: string; rss: number } | undefined {
  try {
    const name = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return rss ? { name, rss: Number(rss) * 1024 } : undefined;
  } catch {
    return undefined;
  }
}

/** Starts sampling; `stop()` returns the peak summed RSS (bytes) of matching processes. */
export function sampleMemory(root: number, match: RegExp, everyMs = 200): { stop(): number } {
  let peak = 0;
  const timer = setInterval(() => {
    let total = 0;
    for (const pid of descendants(root)) {
      const p = rssBytes(pid);
      if (p && match.test(p.name)) total += p.rss;
    }
    peak = Math.max(peak, total);
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

/** "123 MiB" */
export function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}
