//! Shell quoting, the one rule of converge: for showing an argv as a line a person could paste
//! into a shell, and for `vzctl exec2`, which joins its arguments into a shell line.

/// An argv as one line a person could paste into a shell.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// Shell-quotes one word when it needs it.
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+#".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_leaves_plain_words_alone() {
        assert_eq!(
            shell_line(&[
                "mount".into(),
                "-o".into(),
                "defaults".into(),
                "/my dir".into()
            ]),
            "mount -o defaults '/my dir'"
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn regression_a_glob_character_is_quoted() {
        // `*` was left bare: `vzctl exec2` joins its arguments into a shell line, where a bare
        // `*` in a path would be expanded inside the container.
        assert_eq!(quote("/svc/S*"), "'/svc/S*'");
    }
}
