// Names shown to participants (docs/e2ee.md, section 15): cleanName
// removes what renders as nothing or reorders text; skeleton reduces a name
// to what it looks like, so that look-alike names can be flagged. The Go
// twin is internal/e2ee/names.go; vectors.json ("names") holds the cases
// both must agree on, one per entry of the look-alike table.

import { UTS39 } from './names_uts39.mjs';

const FILLERS = new Set([0x115f, 0x1160, 0x3164, 0xffa0]);
const INVISIBLE = /[\p{Cc}\p{Cf}]/u;
const MARK = /\p{Mn}/u;
const SPACE = /\s/u;

// The hand-made table (names.go's): Cyrillic and Greek letters, signs, Latin small capitals.
const HAND = { 'А': 'A', 'В': 'B', 'Е': 'E', 'К': 'K', 'М': 'M', 'Н': 'H', 'О': 'O', 'Р': 'P', 'С': 'C', 'Т': 'T', 'Х': 'X', 'У': 'Y', 'Ѕ': 'S', 'І': 'I', 'Ј': 'J', 'Ԁ': 'D', 'Ԛ': 'Q', 'Ԝ': 'W', 'Ү': 'Y', 'Ӏ': 'l', 'а': 'a', 'в': 'b', 'е': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'т': 't', 'х': 'x', 'у': 'y', 'ѕ': 's', 'і': 'i', 'ј': 'j', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'ү': 'y', 'һ': 'h', 'ӏ': 'l', 'ь': 'b', 'г': 'r', 'п': 'n', 'ѵ': 'v', 'Α': 'A', 'Β': 'B', 'Ε': 'E', 'Ζ': 'Z', 'Η': 'H', 'Ι': 'I', 'Κ': 'K', 'Μ': 'M', 'Ν': 'N', 'Ο': 'O', 'Ρ': 'P', 'Τ': 'T', 'Υ': 'Y', 'Χ': 'X', 'Ϲ': 'C', 'Ϳ': 'J', 'Σ': 'σ', 'α': 'a', 'β': 'b', 'γ': 'y', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'μ': 'u', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'ω': 'w', 'ϲ': 'c', 'ϳ': 'j', 'ς': 'c', 'ı': 'i', 'ɡ': 'g', 'ɑ': 'a', 'ǀ': 'l', '0': 'o', '1': 'l', '|': 'l', '!': 'l',
  // Latin small capitals (UTS #39 lists only some of them)
  'ᴀ': 'a', 'ʙ': 'b', 'ᴅ': 'd', 'ᴇ': 'e', 'ɢ': 'g', 'ʜ': 'h', 'ᴊ': 'j', 'ᴋ': 'k', 'ʟ': 'l', 'ᴍ': 'm', 'ɴ': 'n', 'ᴘ': 'p', 'ʀ': 'r', 'ꜱ': 's', 'ᴛ': 't'
};

/**
 * Look-alike letters as Latin: the hand-made table, completed by every
 * single-letter entry of Unicode's UTS #39 confusables (names_uts39.mjs);
 * the hand-made entries win.
 */
export const CONFUSABLES = Object.freeze({
  ...Object.fromEntries(Object.entries(UTS39).map(([cp, m]) => [String.fromCodePoint(Number(cp)), m])),
  ...HAND,
});

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

const WORD = /[\p{L}\p{Nd}]+/gu;
const LETTER_OR_DIGIT = /[\p{L}\p{Nd}]/u;
const sameWords = (a, b) => a.length === b.length && a.every((w, i) => w === b[i]);

/**
 * Whether the name someone chose imitates another name (Go's e2ee.LooksLike):
 * the same skeleton, or the same words once punctuation and symbols are set
 * aside; with within, also the other name's words in a row among the chosen
 * name's ("Alice Martin (CEO)"), when they hold at least 3 letters.
 * @param {string} chosen
 * @param {string} other
 * @param {boolean} within
 * @returns {boolean}
 */
export function looksLike(chosen, other, within) {
  const a = skeleton(chosen);
  const b = skeleton(other);
  if (!a || !b) return false;
  if (a === b) return true;
  const wa = a.match(WORD) ?? [];
  const wb = b.match(WORD) ?? [];
  if (!wb.length) return false;
  if (sameWords(wa, wb)) return true;
  const letters = wb.reduce((n, w) => n + [...w].length, 0);
  if (!within || letters < 3) return false;
  for (let i = 0; i + wb.length <= wa.length; i++) if (sameWords(wa.slice(i, i + wb.length), wb)) return true;
  return false;
}

/**
 * Whether a chosen name writes out an account as the badge does
 * ("Alice (@alice)"; Go's e2ee.ClaimsAccount).
 * @param {string} chosen
 * @param {string} account
 * @returns {boolean}
 */
export function claimsAccount(chosen, account) {
  const a = skeleton(chosen);
  const acc = skeleton(account);
  if (!acc) return false;
  const at = `@${acc}`;
  for (let i = a.indexOf(at); i >= 0; i = a.indexOf(at, i + 1)) {
    const next = [...a.slice(i + at.length)][0];
    if (next === undefined || !LETTER_OR_DIGIT.test(next)) return true;
  }
  return false;
}
