// Display-name helpers.

/**
 * Up to two initials for a display name: the first letter of the first and
 * of the last word, upper-cased ("Ada Lovelace" -> "AL", "plato" -> "P").
 * Returns "?" for a name without letters or digits.
 * @param {string} name
 * @returns {string}
 */
export function initials(name) {
  const words = String(name ?? '')
    .trim()
    .split(/\s+/u)
    .map((w) => Array.from(w).find((ch) => /[\p{L}\p{N}]/u.test(ch)))
    .filter(Boolean);
  if (words.length === 0) return '?';
  const first = words[0];
  const last = words.length > 1 ? words[words.length - 1] : '';
  return (first + last).toLocaleUpperCase();
}
