//! Text from a file, shown back to an operator: escaped and short.
//!
//! Whatever converge prints or logs about a file (a key, a value, the file's own name, a YAML
//! error) ends up in a terminal, the journal and `daemon.json`. A control character there could
//! forge a line (`\n` followed by a fake `FILE:LINE:COL:`), or drive the terminal (ESC
//! sequences). And a file that is not YAML at all (a symlink to /etc/shadow, say) reads as one
//! long string: quoting it whole would copy the file into the logs. So everything quoted back
//! goes through here: control characters are written as escapes, and a quoted value is cut to
//! [`EXCERPT_CHARS`].

use std::fmt;

/// The most characters of a value quoted in a message.
pub const EXCERPT_CHARS: usize = 80;

/// Whether `c` is shown as an escape: the control characters (`char::is_control`: C0, DEL and
/// C1, so `\n` and ESC), plus the Unicode line and paragraph separators and the bidirectional
/// overrides, which can reorder or break what a terminal shows without being "control".
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Displays a text with every character [`needs_escape`] says is unsafe written as `\n`, `\t`,
/// `\r`, `\0` or `\u{1b}`; everything else as it is.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| needs_escape(c)) {
            f.write_str(&rest[..at])?;
            match c {
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                '\0' => f.write_str("\\0")?,
                c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// `s` quoted as Rust's `{:?}` quotes it (so escaped), cut to [`EXCERPT_CHARS`] characters:
/// `"abc…" (1048576 bytes)` for a longer one.
pub fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
    }
}

/// `s` cut to [`EXCERPT_CHARS`] characters (with `…` when cut), unquoted: for keys, which are
/// shown between backquotes. Escaping is left to the final display.
pub fn shortened(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(EXCERPT_CHARS) {
        None => s.into(),
        Some((cut, _)) => format!("{}…", &s[..cut]).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let shown = Escaped("a\nb\tc\u{1b}[31md\0é\u{202e}\"\\").to_string();
        assert_eq!(shown, "a\\nb\\tc\\u{1b}[31md\\0é\\u{202e}\"\\");
        assert!(!shown.chars().any(needs_escape));
    }

    #[test]
    fn excerpts_are_short_and_say_how_long_the_value_was() {
        assert_eq!(excerpt("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(1000);
        let shown = excerpt(&long);
        assert!(shown.starts_with(&format!("\"{}\"…", "x".repeat(EXCERPT_CHARS))));
        assert!(shown.ends_with("(1000 bytes)"), "{shown}");
        assert_eq!(
            excerpt(&"é".repeat(EXCERPT_CHARS)).chars().count(),
            EXCERPT_CHARS + 2
        );
        assert_eq!(shortened(&long).chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(shortened("short"), "short");
    }
}
