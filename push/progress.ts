/**
 * Progress output, on stderr. On a terminal: one bar per blob being pushed and an overall bar
 * (bytes, speed, ETA), redrawn in place a few times a second, finished blobs printed above them.
 * Otherwise: plain lines (each blob's start and end, every ~10 %, retries). --quiet: nothing
 * but warnings.
 */
import type { BlobSource } from "./image.ts";
import { formatBytes, shortDigest } from "./media.ts";
import type { BlobEvents, BlobOutcome } from "./upload.ts";

export interface Progress extends BlobEvents {
  /** The blobs of the push; their sizes make the overall total. */
  begin(blobs: readonly BlobSource[]): void;
  info(message: string): void;
  warn(message: string): void;
  /** Stops redrawing; leaves the screen clean. */
  end(): void;
}

interface BlobState {
  blob: BlobSource;
  bytes: number;
  started: number;
  /** Bytes at the last 10 % line (line mode). */
  reportedTenth: number;
  samples: Array<[number, number]>;
}

/** Bytes per second over the last few seconds of samples. */
function rate(samples: Array<[number, number]>): number {
  if (samples.length < 2) return 0;
  const [t0, b0] = samples[0]!;
  const [t1, b1] = samples[samples.length - 1]!;
  return t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : 0;
}

function addSample(samples: Array<[number, number]>, bytes: number, now: number): void {
  const last = samples[samples.length - 1];
  if (last && now - last[0] < 100) last[1] = bytes;
  else samples.push([now, bytes]);
  while (samples.length > 2 && now - samples[0]![0] > 5000) samples.shift();
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

const OUTCOME_WORDS: Record<BlobOutcome, string> = { uploaded: "pushed", exists: "already there", mounted: "mounted" };

/** Shared bookkeeping of both renderers. */
abstract class Tracker implements Progress {
  protected readonly out: NodeJS.WriteStream;
  protected readonly active = new Map<string, BlobState>();
  protected total = 0;
  protected skipped = 0;
  protected doneBytes = 0;
  protected doneCount = 0;
  protected count = 0;
  protected readonly overall: Array<[number, number]> = [];
  protected readonly startedAt = Date.now();

  constructor(out: NodeJS.WriteStream) {
    this.out = out;
  }

  begin(blobs: readonly BlobSource[]): void {
    this.total = blobs.reduce((n, b) => n + b.size, 0);
    this.count = blobs.length;
  }

  /** Bytes sent or done over all blobs. */
  protected sent(): number {
    let n = this.doneBytes;
    for (const s of this.active.values()) n += s.bytes;
    return n;
  }

  /** What is still to send: the total minus blobs the registry already had. */
  protected toSend(): number {
    return this.total - this.skipped;
  }

  start(blob: BlobSource): void {
    this.active.set(blob.digest, { blob, bytes: 0, started: Date.now(), reportedTenth: 0, samples: [] });
  }

  bytes(blob: BlobSource, bytes: number): void {
    const s = this.active.get(blob.digest);
    if (!s) return;
    s.bytes = bytes;
    const now = Date.now();
    addSample(s.samples, bytes, now);
    addSample(this.overall, this.sent(), now);
  }

  done(blob: BlobSource, outcome: BlobOutcome): void {
    const s = this.active.get(blob.digest);
    this.active.delete(blob.digest);
    this.doneCount++;
    if (outcome === "uploaded") this.doneBytes += blob.size;
    else this.skipped += blob.size;
    const secs = s ? (Date.now() - s.started) / 1000 : 0;
    const speed = outcome === "uploaded" && secs > 0 ? `, ${formatBytes(blob.size / secs)}/s` : "";
    this.line(`${OUTCOME_WORDS[outcome]} ${shortDigest(blob.digest)} (${blob.label}) ${formatBytes(blob.size)}${outcome === "uploaded" ? ` in ${secs.toFixed(1)} s${speed}` : ""}`);
  }

  retry(blob: BlobSource, message: string): void {
    this.line(`retrying ${shortDigest(blob.digest)} (${blob.label}): ${message}`);
  }

  info(message: string): void {
    this.line(message);
  }

  warn(message: string): void {
    this.line(`warning: ${message}`);
  }

  end(): void {}

  protected abstract line(text: string): void;
}

/** Plain lines, for logs and pipes. */
export class LineProgress extends Tracker {
  override start(blob: BlobSource): void {
    super.start(blob);
    this.line(`pushing ${shortDigest(blob.digest)} (${blob.label}) ${formatBytes(blob.size)}`);
  }

  override bytes(blob: BlobSource, bytes: number): void {
    super.bytes(blob, bytes);
    const s = this.active.get(blob.digest);
    if (!s || blob.size < 1 << 20) return;
    const tenth = Math.floor((bytes * 10) / blob.size);
    if (tenth > s.reportedTenth && tenth < 10) {
      s.reportedTenth = tenth;
      this.line(`  ${shortDigest(blob.digest)} ${tenth * 10}% (${formatBytes(bytes)} of ${formatBytes(blob.size)}, ${formatBytes(rate(s.samples))}/s)`);
    } else if (tenth < s.reportedTenth) s.reportedTenth = tenth; // a resume went back
  }

  protected line(text: string): void {
    this.out.write(`${text}\n`);
  }
}

/** Nothing but warnings. */
export class QuietProgress extends Tracker {
  override info(): void {}
  override retry(): void {}
  protected line(text: string): void {
    if (text.startsWith("warning:")) this.out.write(`${text}\n`);
  }
}

/** Bars redrawn in place on a terminal. */
export class TtyProgress extends Tracker {
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;

  override begin(blobs: readonly BlobSource[]): void {
    super.begin(blobs);
    this.timer = setInterval(() => this.draw(), 200);
    this.timer.unref();
  }

  override end(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.clear();
  }

  protected line(text: string): void {
    this.clear();
    this.out.write(`${text}\n`);
    this.draw();
  }

  private clear(): void {
    if (this.drawn > 0) this.out.write(`\x1b[${this.drawn}F\x1b[0J`);
    this.drawn = 0;
  }

  private bar(fraction: number, width: number): string {
    const f = Math.max(0, Math.min(1, fraction));
    const full = Math.round(f * width);
    return `[${"#".repeat(full)}${"-".repeat(width - full)}]`;
  }

  private row(name: string, done: number, total: number, speed: number, width: number): string {
    const pct = total > 0 ? (done / total) * 100 : 100;
    const eta = speed > 0 ? duration((total - done) / speed) : "--";
    const stats = `${pct.toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(total)} ${formatBytes(speed)}/s ETA ${eta}`;
    const barWidth = Math.max(10, Math.min(30, width - name.length - stats.length - 4));
    const text = `${name} ${this.bar(total > 0 ? done / total : 1, barWidth)} ${stats}`;
    return text.length > width ? text.slice(0, width - 1) : text;
  }

  private draw(): void {
    if (!this.timer) return;
    const width = Math.max(40, (this.out.columns || 100) - 1);
    const lines: string[] = [];
    const labelWidth = Math.min(40, Math.max(20, Math.floor(width / 3)));
    const active = [...this.active.values()];
    for (const s of active.slice(0, 12)) {
      const name = `${shortDigest(s.blob.digest).slice(7, 19)} ${s.blob.label}`;
      lines.push(this.row(name.length > labelWidth ? `${name.slice(0, labelWidth - 1)}…` : name.padEnd(labelWidth), s.bytes, s.blob.size, rate(s.samples), width));
    }
    if (active.length > 12) lines.push(`… and ${active.length - 12} more`);
    const overallName = `total (${this.doneCount}/${this.count} blobs)`.padEnd(labelWidth);
    lines.push(this.row(overallName, this.sent(), this.toSend(), rate(this.overall), width));
    this.clear();
    this.out.write(`${lines.join("\n")}\n`);
    this.drawn = lines.length;
  }
}

export function createProgress(mode: "tty" | "lines" | "quiet", out: NodeJS.WriteStream = process.stderr): Progress {
  if (mode === "quiet") return new QuietProgress(out);
  return mode === "tty" ? new TtyProgress(out) : new LineProgress(out);
}
