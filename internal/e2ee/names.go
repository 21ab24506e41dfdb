package e2ee

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Names shown to participants (docs/e2ee.md, section 15): CleanName removes
// what renders as nothing or reorders text; Skeleton reduces a name to what
// it looks like, so that look-alike names can be flagged. The JavaScript
// twin is web/static/js/e2ee/names.mjs; vectors.json ("names") holds the
// cases both must agree on.

// fillers are letters that render as blank space (Hangul fillers).
var fillers = map[rune]bool{0x115F: true, 0x1160: true, 0x3164: true, 0xFFA0: true}

// CleanName removes control and format characters (Unicode Cc and Cf: bidi
// controls, zero-width characters, soft hyphens) and blank fillers, and
// trims white space.
func CleanName(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) || fillers[r] || r == unicode.ReplacementChar {
			continue
		}
		sb.WriteRune(r)
	}
	return strings.TrimSpace(sb.String())
}

// confusables maps letters of the Cyrillic and Greek scripts that look
// like Latin ones (upper and lower case) to the Latin letter, a few signs
// that pass for letters, Latin small capitals, and (init, below) every
// single-letter entry of Unicode's UTS #39 confusables. It is applied
// before and after lower-casing.
var confusables = map[rune]string{
	// Cyrillic capitals
	'А': "A", 'В': "B", 'Е': "E", 'К': "K", 'М': "M", 'Н': "H", 'О': "O", 'Р': "P", 'С': "C",
	'Т': "T", 'Х': "X", 'У': "Y", 'Ѕ': "S", 'І': "I", 'Ј': "J", 'Ԁ': "D", 'Ԛ': "Q", 'Ԝ': "W", 'Ү': "Y",
	'Ӏ': "l",
	// Cyrillic small
	'а': "a", 'в': "b", 'е': "e", 'к': "k", 'м': "m", 'н': "h", 'о': "o", 'р': "p", 'с': "c",
	'т': "t", 'х': "x", 'у': "y", 'ѕ': "s", 'і': "i", 'ј': "j", 'ԁ': "d", 'ԛ': "q", 'ԝ': "w", 'ү': "y",
	'һ': "h", 'ӏ': "l", 'ь': "b", 'г': "r", 'п': "n", 'ѵ': "v",
	// Greek capitals
	'Α': "A", 'Β': "B", 'Ε': "E", 'Ζ': "Z", 'Η': "H", 'Ι': "I", 'Κ': "K", 'Μ': "M", 'Ν': "N",
	'Ο': "O", 'Ρ': "P", 'Τ': "T", 'Υ': "Y", 'Χ': "X", 'Ϲ': "C", 'Ϳ': "J", 'Σ': "σ",
	// Greek small
	'α': "a", 'β': "b", 'γ': "y", 'ε': "e", 'η': "n", 'ι': "i", 'κ': "k", 'μ': "u", 'ν': "v",
	'ο': "o", 'ρ': "p", 'τ': "t", 'υ': "u", 'χ': "x", 'ω': "w", 'ϲ': "c", 'ϳ': "j", 'ς': "c",
	// Latin variants and signs
	'ı': "i", 'ɡ': "g", 'ɑ': "a", 'ǀ': "l", '0': "o", '1': "l", '|': "l", '!': "l",
	// Latin small capitals (UTS #39 lists only some of them)
	'ᴀ': "a", 'ʙ': "b", 'ᴅ': "d", 'ᴇ': "e", 'ɢ': "g", 'ʜ': "h", 'ᴊ': "j", 'ᴋ': "k", 'ʟ': "l",
	'ᴍ': "m", 'ɴ': "n", 'ᴘ': "p", 'ʀ': "r", 'ꜱ': "s", 'ᴛ': "t",
}

// The UTS #39 entries complete the table (names_uts39.go); the hand-made
// entries above win.
func init() {
	for r, m := range uts39Confusables {
		if _, ok := confusables[r]; !ok {
			confusables[r] = m
		}
	}
}

// foldStroke makes one letter of the vertical strokes that remain after
// lower-casing and the table (l, and i from I).
func foldStroke(r rune) rune {
	if r == 'l' {
		return 'i'
	}
	return r
}

// Skeleton reduces a name to what it looks like: CleanName, NFKC, NFD
// without combining marks, the look-alike table, lower case, the table
// again, vertical strokes (l, I) as one letter, "rn" as "m", "vv" as "w",
// and white space runs as one space.
func Skeleton(s string) string {
	s = norm.NFKC.String(CleanName(s))
	var sb strings.Builder
	for _, r := range norm.NFD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		if m, ok := confusables[r]; ok {
			sb.WriteString(m)
		} else {
			sb.WriteRune(r)
		}
	}
	lower := strings.ToLower(sb.String())
	sb.Reset()
	space := false
	for _, r := range lower {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		space = false
		if m, ok := confusables[r]; ok {
			for _, x := range m {
				sb.WriteRune(foldStroke(x))
			}
		} else {
			sb.WriteRune(foldStroke(r))
		}
	}
	out := strings.ReplaceAll(sb.String(), "rn", "m")
	return strings.ReplaceAll(out, "vv", "w")
}

// Confusable reports whether two different names look alike.
func Confusable(a, b string) bool {
	return a != b && Skeleton(a) == Skeleton(b)
}

// skeletonWords splits a skeleton into its runs of letters and digits.
func skeletonWords(sk string) []string {
	return strings.FieldsFunc(sk, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// LooksLike reports whether the name someone chose imitates another name:
// the same skeleton, or the same words once punctuation and symbols are
// set aside ("Alice-Martin ✓"); with within, also the other name's words
// in a row among the chosen name's ("Alice Martin (CEO)", "Dr Alice
// Martin"), when they hold at least 3 letters. A name and an account of a
// certified participant are compared within; other names are not.
func LooksLike(chosen, other string, within bool) bool {
	a, b := Skeleton(chosen), Skeleton(other)
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	wa, wb := skeletonWords(a), skeletonWords(b)
	if len(wb) == 0 {
		return false
	}
	if slices.Equal(wa, wb) {
		return true
	}
	letters := 0
	for _, w := range wb {
		letters += utf8.RuneCountInString(w)
	}
	if !within || letters < 3 {
		return false
	}
	for i := 0; i+len(wb) <= len(wa); i++ {
		if slices.Equal(wa[i:i+len(wb)], wb) {
			return true
		}
	}
	return false
}

// ClaimsAccount reports whether a chosen name writes out an account as
// the badge does ("Alice (@alice)"): "@" then the account, alike by
// skeleton, not followed by a letter or digit.
func ClaimsAccount(chosen, account string) bool {
	a, acc := Skeleton(chosen), Skeleton(account)
	if acc == "" {
		return false
	}
	at := "@" + acc
	for i := strings.Index(a, at); i >= 0; {
		rest := a[i+len(at):]
		if r, _ := utf8.DecodeRuneInString(rest); rest == "" || !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return true
		}
		j := strings.Index(a[i+1:], at)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}
