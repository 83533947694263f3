declare namespace Cloudflare {
  interface Env {
    REGISTRY: R2Bucket;
    USERNAME: string;
    PASSWORD: string;
    READONLY_USERNAME: string;
    READONLY_PASSWORD: string;
  }
}
