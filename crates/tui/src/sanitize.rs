//! Text from events is untrusted: a producer (or an attacker who can write to the topic) could
//! put terminal escape sequences in a title. Everything drawn from an event goes through
//! `sanitize` first, so a title containing `\x1b[2J` cannot clear the screen, a bell cannot
//! beep, and bidi overrides cannot make one incident's text read like another's.

use std::borrow::Cow;

/// Shown where a control character was; visible, so tampering does not go unnoticed.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Characters kept at most per call: a cell is never wider than a terminal, and a hostile
/// megabyte-long title must not cost a megabyte of work per frame.
pub const MAX_CHARS: usize = 4096;

/// One line of displayable text: escape sequences removed, other control characters (C0, C1,
/// DEL) replaced by U+FFFD, line breaks and tabs turned into spaces, bidirectional and
/// invisible formatting characters removed, and the result cut at `MAX_CHARS` characters.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    sanitize_with_limit(text, MAX_CHARS)
}

/// As `sanitize`, cut after `limit` characters (an ellipsis marks the cut).
pub fn sanitize_with_limit(text: &str, limit: usize) -> Cow<'_, str> {
    if text.chars().take(limit + 1).count() <= limit && text.chars().all(is_plain) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(limit * 4));
    let mut kept = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if kept >= limit {
            out.push('…');
            break;
        }
        match c {
            '\u{1b}' => {
                skip_escape_sequence(&mut chars);
                continue;
            }
            // C1 introducers of sequences with parameters: CSI, then OSC/DCS/SOS/PM/APC.
            '\u{9b}' => {
                skip_csi(&mut chars);
                continue;
            }
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => {
                skip_string(&mut chars);
                continue;
            }
            '\t' | '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{2028}' | '\u{2029}' | '\u{85}' => {
                out.push(' ')
            }
            c if is_invisible_format(c) => continue,
            c if c.is_control() => out.push(REPLACEMENT),
            c => out.push(c),
        }
        kept += 1;
    }
    Cow::Owned(out)
}

/// Multi-line text (a pretty-printed payload): each line sanitised on its own.
pub fn sanitize_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| sanitize(line).into_owned())
        .collect()
}

fn is_plain(c: char) -> bool {
    !c.is_control() && !is_invisible_format(c) && c != '\u{2028}' && c != '\u{2029}'
}

/// Bidirectional controls (which reorder what follows them) and invisible marks.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'              // arabic letter mark
            | '\u{200B}'        // zero width space
            | '\u{200E}'..='\u{200F}' // LRM, RLM
            | '\u{202A}'..='\u{202E}' // LRE, RLE, PDF, LRO, RLO
            | '\u{2060}'        // word joiner
            | '\u{2066}'..='\u{2069}' // LRI, RLI, FSI, PDI
            | '\u{FEFF}' // byte order mark
    )
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// After ESC: CSI (`ESC [`), string sequences (`ESC ] P X ^ _` up to BEL or ST), or a plain
/// two-character sequence (`ESC c`, `ESC 7`, charset selections `ESC ( B` ...).
fn skip_escape_sequence(chars: &mut Chars<'_>) {
    match chars.peek().copied() {
        Some('[') => {
            chars.next();
            skip_csi(chars);
        }
        Some(']' | 'P' | 'X' | '^' | '_') => {
            chars.next();
            skip_string(chars);
        }
        Some(' '..='/') => {
            // nF sequences: intermediates, then one final byte.
            while let Some(' '..='/') = chars.peek() {
                chars.next();
            }
            if let Some('0'..='~') = chars.peek() {
                chars.next();
            }
        }
        Some('0'..='~') => {
            chars.next();
        }
        _ => {}
    }
}

/// Parameter bytes, intermediate bytes, then one final byte; stops early at anything else so a
/// broken sequence cannot swallow the rest of the text.
fn skip_csi(chars: &mut Chars<'_>) {
    while let Some('0'..='?') = chars.peek() {
        chars.next();
    }
    while let Some(' '..='/') = chars.peek() {
        chars.next();
    }
    if let Some('@'..='~') = chars.peek() {
        chars.next();
    }
}

/// OSC, DCS and friends run to BEL or ST (`ESC \` or U+009C). An unterminated one runs to the
/// end of the text, which is what a terminal would swallow too.
fn skip_string(chars: &mut Chars<'_>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{07}' | '\u{9c}' => return,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in ["Server Down", "ünïcödé ✓ 漢字", "", "a → b"] {
            let cleaned = sanitize(text);
            assert!(matches!(cleaned, Cow::Borrowed(_)), "{text}");
            assert_eq!(cleaned, text);
        }
    }

    #[test]
    fn escape_sequences_are_removed_whole() {
        let table = [
            ("clear\u{1b}[2Jscreen", "clearscreen"),
            ("\u{1b}[1;31mred\u{1b}[0m", "red"),
            ("\u{1b}[?1049h alt", " alt"),
            ("title\u{1b}]0;pwned\u{07}rest", "titlerest"),
            (
                "link \u{1b}]8;;http://x\u{1b}\\text\u{1b}]8;;\u{1b}\\",
                "link text",
            ),
            ("reset\u{1b}c!", "reset!"),
            ("charset\u{1b}(Bok", "charsetok"),
            ("c1 csi \u{9b}2J done", "c1 csi  done"),
            ("dcs \u{1b}Pq#0;2;0;0;0\u{1b}\\ after", "dcs  after"),
            ("unterminated \u{1b}]0;title", "unterminated "),
            ("trailing esc \u{1b}", "trailing esc "),
        ];
        for (input, expected) in table {
            assert_eq!(sanitize(input), expected, "{input:?}");
        }
    }

    #[test]
    fn control_characters_are_replaced_and_whitespace_flattened() {
        assert_eq!(sanitize("bell\u{07}!"), "bell\u{FFFD}!");
        assert_eq!(sanitize("nul\0del\u{7f}"), "nul\u{FFFD}del\u{FFFD}");
        assert_eq!(sanitize("c1\u{85}\u{8d}x"), "c1 \u{FFFD}x");
        assert_eq!(sanitize("line\r\nbreak\ttab"), "line  break tab");
        assert_eq!(sanitize("back\u{8}space"), "back\u{FFFD}space");
    }

    #[test]
    fn bidi_overrides_and_invisible_marks_are_removed() {
        assert_eq!(sanitize("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(sanitize("\u{2066}a\u{2069}\u{200F}b\u{FEFF}"), "ab");
        assert_eq!(sanitize("zero\u{200B}width"), "zerowidth");
    }

    #[test]
    fn output_never_contains_control_or_bidi_characters() {
        let hostile: String = (0u32..0x250)
            .chain(0x2000..0x2070)
            .filter_map(char::from_u32)
            .collect();
        let cleaned = sanitize(&hostile);
        assert!(
            cleaned
                .chars()
                .all(|c| !c.is_control() && !is_invisible_format(c)),
            "{cleaned:?}"
        );
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let long = "x".repeat(10_000);
        let cleaned = sanitize(&long);
        assert_eq!(cleaned.chars().count(), MAX_CHARS + 1);
        assert!(cleaned.ends_with('…'));
        assert_eq!(sanitize_with_limit("abcdef", 3), "abc…");
        assert_eq!(sanitize_with_limit("abc", 3), "abc");
    }

    #[test]
    fn lines_are_sanitised_one_by_one() {
        assert_eq!(
            sanitize_lines("{\n  \"a\": \"\u{1b}[2J\"\n}"),
            vec!["{", "  \"a\": \"\"", "}"]
        );
    }
}
