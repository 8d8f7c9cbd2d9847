//! Text from outside — plugin logs, intent names, token names, names in
//! URLs — made safe to show: control characters (newlines, escape
//! sequences, NUL) are written as escapes, so outside text can never forge
//! a line of Coach's own output or drive a terminal.

use std::borrow::Cow;

/// Characters that change how text around them shows without showing
/// themselves: controls, and the bidirectional overrides and zero-width
/// marks that make `\u{202e}latot` read as `total`.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `s` with every control and hidden formatting character escaped (`\n`,
/// `\u{1b}`, `\u{202e}`, …).
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` with every control character but newline and tab escaped: for
/// whole blocks of Coach's own output (tables, located errors with their
/// carets) that may hold outside text. Outside text that could hold a
/// newline of its own goes through [`printable`] first.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` when
/// cut.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}…", &s[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(
            printable("a\n[register] done: registered model 999\u{1b}[2J"),
            "a\\n[register] done: registered model 999\\u{1b}[2J"
        );
        assert_eq!(printable("nul\0"), "nul\\u{0}");
        assert_eq!(
            terminal_safe("a table\n\tof\u{1b}[2J\r rows"),
            "a table\n\tof\\u{1b}[2J\\r rows"
        );
        assert_eq!(clip("héllo", 2), "h…");
        assert_eq!(clip("hi", 10), "hi");
    }
}
