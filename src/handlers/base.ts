import type { Handler } from "./context";

/**
 * `GET /v2/`: tells clients this is an OCI Distribution registry and that their login works.
 *
 * @example
 * curl -u user:pass https://registry.example/v2/   # 200 {}
 */
export const apiVersionCheck: Handler = async (request) =>
  new Response(request.method === "HEAD" ? null : "{}", {
    status: 200,
    headers: { "Content-Type": "application/json; charset=utf-8", "Content-Length": "2" },
  });
