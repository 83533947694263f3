/** One challenge of a `WWW-Authenticate` header: its scheme (lowercased) and parameters. */
export interface Challenge {
  scheme: string;
  /** Parameter names lowercased; quoted values unquoted and unescaped. */
  params: Record<string, string>;
}

const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;

/**
 * Parses a `WWW-Authenticate` header (RFC 9110 §11.6.1): several challenges in one header,
 * parameters in any order, optional spaces around `=` and `,`, quoted values that contain commas,
 * spaces and escaped quotes. Unparseable pieces are skipped, never thrown on.
 *
 * @example
 * parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"')[0]?.params.service;
 * // "registry.docker.io"
 */
export function parseChallenges(header: string | null): Challenge[] {
  const s = header ?? "";
  const challenges: Challenge[] = [];
  let i = 0;
  const spaces = () => {
    while (i < s.length && (s[i] === " " || s[i] === "\t")) i++;
  };
  const token = (): string | undefined => {
    TOKEN.lastIndex = i;
    const match = TOKEN.exec(s);
    if (!match) return undefined;
    i += match[0].length;
    return match[0];
  };
  const quoted = (): string => {
    let out = "";
    i++; // opening quote
    while (i < s.length && s[i] !== '"') {
      if (s[i] === "\\" && i + 1 < s.length) i++;
      out += s[i];
      i++;
    }
    i++; // closing quote
    return out;
  };
  while (i < s.length) {
    spaces();
    if (i >= s.length) break;
    if (s[i] === ",") {
      i++;
      continue;
    }
    const scheme = token();
    if (!scheme) {
      i++;
      continue;
    }
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    challenges.push(challenge);
    for (;;) {
      spaces();
      while (s[i] === ",") {
        i++;
        spaces();
      }
      const start = i;
      const name = token();
      if (!name) break;
      spaces();
      if (s[i] !== "=") {
        // The scheme of the next challenge (or a token68 credential): not a parameter.
        i = start;
        break;
      }
      i++;
      spaces();
      const value = s[i] === '"' ? quoted() : (token() ?? "");
      challenge.params[name.toLowerCase()] = value;
      spaces();
      if (s[i] !== ",") break;
    }
  }
  return challenges;
}
