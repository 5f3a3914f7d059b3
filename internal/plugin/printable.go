package plugin

import (
	"io"
	"strings"
	"unicode/utf8"
)

// Printable returns s as it is safe to show on a terminal: without escape
// sequences (ESC and the C1 CSI, OSC, DCS, SOS, PM and APC with what they
// introduce), without other C0 and C1 control characters and DEL, and
// with bytes that are not UTF-8 replaced by U+FFFD. Newline and tab stay.
//
// Condition messages, Event notes, annotation values and API errors come
// from whoever could write them (a ServiceNow error page quoted in a
// message, say); printed as they are, they could move the cursor, rewrite
// what is on screen or set the terminal's title. cli-runtime's
// printers.EscapeTerminal only makes ESC and CR visible; this removes the
// whole sequence, so what is left reads as the message meant.
func Printable(s string) string {
	if plain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			// Some terminals read a lone byte 0x80-0x9f as a C1 control.
			b.WriteRune(utf8.RuneError)
			i++
		case r == '\x1b':
			i += escapeLen(s[i:])
		case r == '\u009b': // CSI
			i += size + csiLen(s[i+size:])
		case r == '\u0090' || r == '\u0098' || r == '\u009d' || r == '\u009e' || r == '\u009f': // DCS SOS OSC PM APC
			i += size + controlStringLen(s[i+size:])
		case r == '\n' || r == '\t':
			b.WriteRune(r)
			i += size
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			i += size
		default:
			b.WriteString(s[i : i+size])
			i += size
		}
	}
	return b.String()
}

// plain says s holds only printable ASCII, newlines and tabs.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\n' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// escapeLen is the length of the escape sequence s starts with (s[0] is
// ESC), as ECMA-48 defines them; a lone ESC is 1.
func escapeLen(s string) int {
	if len(s) < 2 {
		return 1
	}
	switch c := s[1]; {
	case c == '[': // CSI
		return 2 + csiLen(s[2:])
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_': // OSC DCS SOS PM APC
		return 2 + controlStringLen(s[2:])
	case c >= 0x20 && c <= 0x2f: // intermediate bytes, then a final byte
		j := 2
		for j < len(s) && s[j] >= 0x20 && s[j] <= 0x2f {
			j++
		}
		if j < len(s) && s[j] >= 0x30 && s[j] <= 0x7e {
			j++
		}
		return j
	case c >= 0x30 && c <= 0x7e: // a two-byte sequence
		return 2
	}
	return 1
}

// csiLen is the length of a control sequence's parameter, intermediate
// and final bytes at the start of s.
func csiLen(s string) int {
	j := 0
	for j < len(s) && s[j] >= 0x30 && s[j] <= 0x3f {
		j++
	}
	for j < len(s) && s[j] >= 0x20 && s[j] <= 0x2f {
		j++
	}
	if j < len(s) && s[j] >= 0x40 && s[j] <= 0x7e {
		j++
	}
	return j
}

// controlStringLen is the length of a control string (an OSC's title, say)
// at the start of s, with its terminator: BEL, ESC \ or the C1 ST. An
// unterminated string runs to the end of s, as a terminal would read it.
func controlStringLen(s string) int {
	for j := 0; j < len(s); j++ {
		switch {
		case s[j] == '\a':
			return j + 1
		case s[j] == '\x1b' && j+1 < len(s) && s[j+1] == '\\':
			return j + 2
		case strings.HasPrefix(s[j:], "\u009c"):
			return j + len("\u009c")
		}
	}
	return len(s)
}

// printableWriter writes what it is given through Printable. Each Write is
// cleaned on its own: a sequence split across two writes loses its
// control bytes either way, so at worst printable residue remains.
type printableWriter struct{ w io.Writer }

func (p printableWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, Printable(string(b))); err != nil {
		return 0, err
	}
	return len(b), nil
}
