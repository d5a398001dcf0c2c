//! `--command` split into words the way a POSIX shell splits them, without what a shell would
//! also do (variables, globs, pipes): `'…'` keeps everything, `"…"` keeps everything but `\"`
//! and `\\`, a backslash outside quotes escapes the next character.

pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word begun by quotes may be empty (`''`) and still be a word.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a ' quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a \" quote is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a \" quote is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("a trailing backslash escapes nothing".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("no program named".into());
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_like_a_shell() {
        let ok = |s: &str| split(s).unwrap();
        assert_eq!(ok("wakeway whoami"), ["wakeway", "whoami"]);
        assert_eq!(
            ok(r#"python -c 'print("hi there")'"#),
            ["python", "-c", r#"print("hi there")"#]
        );
        assert_eq!(
            ok(r#"sh -c "echo \"a b\" \$HOME""#),
            ["sh", "-c", r#"echo "a b" $HOME"#]
        );
        assert_eq!(ok(r"a\ b  c"), ["a b", "c"]);
        assert_eq!(ok("app '' x"), ["app", "", "x"]);
        assert_eq!(ok("  app\t--flag=1  "), ["app", "--flag=1"]);
    }

    #[test]
    fn unclosed_quotes_are_errors() {
        assert!(split("app 'oops").unwrap_err().contains("'"));
        assert!(split("app \"oops").unwrap_err().contains("\""));
        assert!(split("app \\").is_err());
        assert!(split("   ").is_err());
    }
}
