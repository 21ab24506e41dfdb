// Names shown to participants (docs/e2ee.md, section 15): cleanName
// removes what renders as nothing or reorders text; skeleton reduces a name
// to what it looks like, so that look-alike names can be flagged. The Go
// twin is internal/e2ee/names.go; vectors.json ("names") holds the cases
// both must agree on, one per entry of the look-alike table.

const FILLERS = new Set([0x115f, 0x1160, 0x3164, 0xffa0]);
const INVISIBLE = /[\p{Cc}\p{Cf}]/u;
const MARK = /\p{Mn}/u;
const SPACE = /\s/u;

/** Look-alike letters of the Cyrillic and Greek scripts, and signs, as Latin. */
export const CONFUSABLES = Object.freeze({ 'А': 'A', 'В': 'B', 'Е': 'E', 'К': 'K', 'М': 'M', 'Н': 'H', 'О': 'O', 'Р': 'P', 'С': 'C', 'Т': 'T', 'Х': 'X', 'У': 'Y', 'Ѕ': 'S', 'І': 'I', 'Ј': 'J', 'Ԁ': 'D', 'Ԛ': 'Q', 'Ԝ': 'W', 'Ү': 'Y', 'Ӏ': 'l', 'а': 'a', 'в': 'b', 'е': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'т': 't', 'х': 'x', 'у': 'y', 'ѕ': 's', 'і': 'i', 'ј': 'j', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'ү': 'y', 'һ': 'h', 'ӏ': 'l', 'ь': 'b', 'г': 'r', 'п': 'n', 'ѵ': 'v', 'Α': 'A', 'Β': 'B', 'Ε': 'E', 'Ζ': 'Z', 'Η': 'H', 'Ι': 'I', 'Κ': 'K', 'Μ': 'M', 'Ν': 'N', 'Ο': 'O', 'Ρ': 'P', 'Τ': 'T', 'Υ': 'Y', 'Χ': 'X', 'Ϲ': 'C', 'Ϳ': 'J', 'Σ': 'σ', 'α': 'a', 'β': 'b', 'γ': 'y', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'μ': 'u', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'ω': 'w', 'ϲ': 'c', 'ϳ': 'j', 'ς': 'c', 'ı': 'i', 'ɡ': 'g', 'ɑ': 'a', 'ǀ': 'l', '0': 'o', '1': 'l', '|': 'l', '!': 'l' });

/**
 * Removes control and format characters (Cc, Cf: bidi controls,
 * zero-width characters, soft hyphens), blank fillers and U+FFFD, and
 * trims white space.
 * @param {string} s
 * @returns {string}
 */
export function cleanName(s) {
  let out = '';
  for (const ch of String(s ?? '')) {
    const cp = ch.codePointAt(0);
    if (INVISIBLE.test(ch) || FILLERS.has(cp) || cp === 0xfffd) continue;
    out += ch;
  }
  return out.trim();
}

const fold = (ch) => (ch === 'l' ? 'i' : ch);

/**
 * What a name looks like: cleanName, NFKC, NFD without combining marks,
 * the look-alike table, lower case, the table again, l and I as one
 * letter, "rn" as "m", "vv" as "w", white space runs as one space.
 * @param {string} s
 * @returns {string}
 */
export function skeleton(s) {
  let mapped = '';
  for (const ch of cleanName(s).normalize('NFKC').normalize('NFD')) {
    if (MARK.test(ch)) continue;
    mapped += CONFUSABLES[ch] ?? ch;
  }
  let out = '';
  let space = false;
  for (const ch of mapped.toLowerCase()) {
    if (SPACE.test(ch)) {
      space = true;
      continue;
    }
    if (space && out.length) out += ' ';
    space = false;
    for (const x of (CONFUSABLES[ch] ?? ch)) out += fold(x);
  }
  return out.replaceAll('rn', 'm').replaceAll('vv', 'w');
}

/** Whether two different names look alike. */
export function confusable(a, b) {
  return a !== b && skeleton(a) === skeleton(b);
}
