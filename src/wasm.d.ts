/**
 * `.wasm` files imported by Workers code: wrangler (and the vitest workers pool) bundle them as
 * compiled modules, to instantiate with `new WebAssembly.Instance(module, imports)`.
 *
 * @example
 * import wasmModule from "./wasm/sha256.wasm";
 * const { exports } = new WebAssembly.Instance(wasmModule, {});
 */
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
